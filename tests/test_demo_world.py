"""The synthetic clutter world: KB, scene generator (unambiguous questions) and the writer."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from region_rerank.demo.entities import (
    COLOURS,
    PATTERNS,
    SHAPES,
    build_kb,
    reference_images,
    render_entity,
)
from region_rerank.demo.scenes import (
    DEFAULT_TEMPLATES,
    HELDOUT_TEMPLATES,
    QUESTION_TYPES,
    SceneConfig,
    SceneQuery,
    generate_queries,
    load_templates,
)
from region_rerank.demo.world import make_world
from region_rerank.errors import ConfigError

KB = build_kb()
BY_ID = {e.id: e for e in KB}


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def queries() -> list[SceneQuery]:
    return generate_queries(SceneConfig(n_queries=64, seed=3), KB)


@pytest.fixture(scope="module")
def clean_queries() -> list[SceneQuery]:
    """No clutter: the background is one flat colour, so object pixels are easy to find."""
    return generate_queries(SceneConfig(n_queries=24, seed=5, clutter=0.0), KB)


def test_kb_has_at_least_200_distinct_entities() -> None:
    assert len(KB) >= 200
    combos = {(e.shape, e.colour, e.pattern) for e in KB}
    assert len(combos) == len(KB)
    assert len({e.id for e in KB}) == len(KB)
    assert len({e.name for e in KB}) == len(KB)
    for e in KB[::37]:
        assert e.colour in e.text and e.shape in e.text and e.pattern in e.text
        assert e.name in e.text
    assert build_kb() == KB  # seed-independent and stable
    assert {e.shape for e in KB} == set(SHAPES)
    assert {e.colour for e in KB} == set(COLOURS)
    assert {e.pattern for e in KB} == set(PATTERNS)


def test_render_is_deterministic_and_varies() -> None:
    e = KB[17]
    a = np.asarray(render_entity(e, 64, np.random.default_rng(1)))
    b = np.asarray(render_entity(e, 64, np.random.default_rng(1)))
    c = np.asarray(render_entity(e, 64, np.random.default_rng(2)))
    assert a.shape == (64, 64, 4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a[..., 3].max() == 255 and a[0, 0, 3] == 0  # opaque shape, transparent corner
    refs = reference_images(e, seed=0, n=2, size=96)
    assert [r.size for r in refs] == [(96, 96), (96, 96)]
    assert not np.array_equal(np.asarray(refs[0]), np.asarray(refs[1]))
    with pytest.raises(ConfigError, match="size"):
        render_entity(e, 4, np.random.default_rng(0))


def test_generation_is_deterministic_per_seed_and_split() -> None:
    def sig(cfg: SceneConfig) -> list[tuple[str, str, tuple[int, ...], bytes]]:
        return [
            (q.question, q.positive, q.box, hashlib.sha256(q.image.tobytes()).digest())
            for q in generate_queries(cfg, KB)
        ]

    base = sig(SceneConfig(n_queries=6, seed=11))
    assert base == sig(SceneConfig(n_queries=6, seed=11))
    assert base != sig(SceneConfig(n_queries=6, seed=12))
    assert base != sig(SceneConfig(n_queries=6, seed=11, split="val"))
    # a query does not depend on how many were generated before it
    assert sig(SceneConfig(n_queries=3, seed=11)) == base[:3]


def test_queries_are_well_formed(queries: list[SceneQuery]) -> None:
    counts = Counter(q.question_type for q in queries)
    assert set(counts) == set(QUESTION_TYPES)
    for q in queries:
        w, h = q.image.size
        assert (w, h) == (224, 224) and q.image.mode == "RGB"
        x1, y1, x2, y2 = q.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert q.positive in BY_ID and q.objects[0].entity_id == q.positive
        assert q.objects[0].box == q.box
        assert 2 <= len(q.objects) <= 4  # target + 1..3 distractors
        assert len({o.entity_id for o in q.objects}) == len(q.objects)
        assert q.ref in q.question and "{" not in q.question
        assert any(q.question == t.format(ref=q.ref)[:1].upper() + t.format(ref=q.ref)[1:]
                   for t in DEFAULT_TEMPLATES)  # fmt: skip
        boxes = [o.box for o in q.objects]
        for i, a in enumerate(boxes):  # objects never overlap
            for b in boxes[i + 1 :]:
                assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1])


def test_box_tightly_contains_the_rendered_target(clean_queries: list[SceneQuery]) -> None:
    for q in clean_queries:
        arr = np.asarray(q.image).astype(int)
        colours, freq = np.unique(arr.reshape(-1, 3), axis=0, return_counts=True)
        background = colours[freq.argmax()]
        fg = np.abs(arr - background).sum(-1) > 0
        inside = np.zeros_like(fg)
        for o in q.objects:
            inside[o.box[1] : o.box[3], o.box[0] : o.box[2]] = True
        assert not fg[~inside].any(), q.id  # every drawn pixel belongs to some object box
        x1, y1, x2, y2 = q.box
        region = fg[y1:y2, x1:x2]
        assert region.mean() > 0.3, q.id
        # tight: the first and last row / column of the box all have target pixels
        assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any()


def _centre(b: tuple[int, ...]) -> tuple[float, float]:
    return ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)


def _area(b: tuple[int, ...]) -> int:
    return (b[2] - b[0]) * (b[3] - b[1])


def _check_unambiguous(q: SceneQuery) -> None:
    target, others = q.objects[0], q.objects[1:]
    ents = [BY_ID[o.entity_id] for o in q.objects]
    if q.question_type == "attribute":
        kind = q.detail
        value = getattr(ents[0], kind)
        assert [getattr(e, kind) for e in ents].count(value) == 1
        word = value if kind != "pattern" else value.replace("solid", "solid-coloured")
        assert word in q.ref
    elif q.question_type == "size":
        areas = [_area(o.box) for o in others]
        if q.detail == "largest":
            assert "largest" in q.ref and _area(target.box) > max(areas)
        else:
            assert "smallest" in q.ref and _area(target.box) < min(areas)
    elif q.question_type == "position":
        kind, where = q.detail.split(":")
        if kind == "corner":
            assert where in q.ref
            corner = (0 if "left" in where else 224, 0 if "top" in where else 224)
            dists = [math.dist(_centre(o.box), corner) for o in q.objects]
            assert dists[0] < min(dists[1:])
        else:
            assert where in q.ref
            axis = 0 if where in ("left", "right") else 1
            cs = [_centre(o.box)[axis] for o in q.objects]
            assert cs[0] == (min(cs) if where in ("left", "top") else max(cs))
            assert cs.count(cs[0]) == 1
    else:
        anchor, rest = others[0], others[1:]
        a_ent = ents[1]
        assert f"the {a_ent.colour} {a_ent.shape}" in q.ref
        assert [(e.colour, e.shape) for e in ents].count((a_ent.colour, a_ent.shape)) == 1
        side = q.detail
        horizontal = side in ("left", "right")

        def beyond_and_overlapping(b: tuple[int, ...]) -> bool:
            c, ac = _centre(b), _centre(anchor.box)
            if horizontal:
                ov = min(b[3], anchor.box[3]) - max(b[1], anchor.box[1])
                return ov > 0 and (c[0] < ac[0] if side == "left" else c[0] > ac[0])
            ov = min(b[2], anchor.box[2]) - max(b[0], anchor.box[0])
            return ov > 0 and (c[1] < ac[1] if side == "top" else c[1] > ac[1])

        assert beyond_and_overlapping(target.box)
        assert not any(beyond_and_overlapping(o.box) for o in rest)


def test_referring_expressions_are_unambiguous(queries: list[SceneQuery]) -> None:
    for q in queries:
        _check_unambiguous(q)


@pytest.mark.parametrize("qtype", QUESTION_TYPES)
def test_each_question_type_alone(qtype: str) -> None:
    cfg = SceneConfig(n_queries=12, seed=9, question_types=(qtype,), distractors=(5, 6))
    qs = generate_queries(cfg, KB)
    assert {q.question_type for q in qs} == {qtype}
    for q in qs:
        _check_unambiguous(q)


def test_templates_file_is_used(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("# my phrasings\n\nWho catalogued {ref}?\n  # indented comment\nName {ref}.\n")
    assert load_templates(path) == ("Who catalogued {ref}?", "Name {ref}.")
    qs = generate_queries(SceneConfig(n_queries=8, templates=str(path)), KB)
    assert {q.question for q in qs} <= {f"Who catalogued {q.ref}?" for q in qs} | {
        f"Name {q.ref}." for q in qs
    }
    held = generate_queries(SceneConfig(n_queries=8, templates=HELDOUT_TEMPLATES), KB)
    assert all(not any(q.question.startswith(t[:10]) for t in DEFAULT_TEMPLATES) for q in held)
    assert not set(HELDOUT_TEMPLATES) & set(DEFAULT_TEMPLATES)


def test_bad_templates_raise_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("Who made {ref}?\nWhat is this object?\n")
    with pytest.raises(ConfigError, match=r"line 2.*\{ref\}"):
        SceneConfig(templates=bad)
    with pytest.raises(ConfigError, match=r"only the \{ref\} placeholder"):
        SceneConfig(templates=("Where is {ref} in {place}?",))
    with pytest.raises(ConfigError, match="no templates"):
        (tmp_path / "empty.txt").write_text("# nothing\n")
        SceneConfig(templates=tmp_path / "empty.txt")
    with pytest.raises(ConfigError, match="cannot be read"):
        SceneConfig(templates=tmp_path / "missing.txt")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"seed": -1}, "seed"),
        ({"n_queries": 2.5}, "n_queries"),
        ({"distractors": (4, 2)}, "distractors"),
        ({"distractors": (0, 3)}, r"distractors\[0\]"),
        ({"target_scale": (0.2, 0.9)}, r"target_scale\[1\]"),
        ({"distractor_scale": (0.3,)}, "distractor_scale"),
        ({"clutter": 1.5}, "clutter"),
        ({"canvas_size": (32, 224)}, r"canvas_size\[0\]"),
        ({"split": "../x"}, "split"),
        ({"question_types": ("colour",)}, "question_types"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        SceneConfig(**kwargs)  # type: ignore[arg-type]


def test_make_world_is_byte_identical_and_loadable(tmp_path: Path) -> None:
    kw: dict[str, object] = {
        "n_train": 3,
        "n_val": 2,
        "n_test": 4,
        "kb_images": 1,
        "n_entities": 60,
    }
    a = make_world(tmp_path / "a", seed=1, **kw)  # type: ignore[arg-type]
    make_world(tmp_path / "b", seed=1, **kw)  # type: ignore[arg-type]
    make_world(tmp_path / "c", seed=2, **kw)  # type: ignore[arg-type]
    ha, hb, hc = (_tree_hashes(tmp_path / n) for n in "abc")
    assert ha == hb
    assert ha.keys() == hc.keys() and ha != hc
    assert ha["kb.jsonl"] == hc["kb.jsonl"]  # KB text is seed-independent

    manifest = json.loads(a.manifest.read_text())
    assert manifest["splits"]["test"]["n_queries"] == 4
    assert manifest["kb"]["n_entities"] == 60
    kb_rows = [json.loads(s) for s in a.kb.read_text().splitlines()]
    assert len(kb_rows) == 60 and all((a.root / r["images"][0]).is_file() for r in kb_rows)
    rows = [json.loads(s) for s in a.queries["test"].read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"test-{i:05d}" for i in range(4)]
    train_q = {json.loads(s)["question"] for s in a.queries["train"].read_text().splitlines()}
    assert train_q != {r["question"] for r in rows}
    for r in rows:
        assert {"id", "image", "question", "positives", "box", "question_type"} <= r.keys()
        assert (a.queries["test"].parent / r["image"]).is_file()
        assert r["positives"][0] in {k["id"] for k in kb_rows} and len(r["box"]) == 4

    with pytest.raises(ConfigError, match="unknown scene option"):
        make_world(tmp_path / "d", n_test=1, colour_mode="x")
    with pytest.raises(ConfigError, match="n_val"):
        make_world(tmp_path / "d", n_val=-1)

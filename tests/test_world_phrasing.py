"""Phrasing families of the demo world: the default wording is unchanged, every family
describes the same scenes, the held-out family shares no wording with the training ones,
and balanced worlds have as many "smallest" as "largest" questions."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from region_rerank.demo.entities import COLOURS, PATTERNS, SHAPES
from region_rerank.demo.phrasing import (
    FAMILIES,
    HELDOUT_FAMILIES,
    TRAIN_FAMILIES,
    RefSpec,
    resolve_phrasing,
)
from region_rerank.demo.world import make_world
from region_rerank.errors import ConfigError

#: sha256 of test/queries.jsonl of make_world(seed=0, n_test=24) as generated before the
#: phrasing families existed (checked equal to the generator at commit 2e3f1b9).
DEFAULT_WORLD_SHA256 = "a339a0555eb75ab5d74c3bdf928838cde613f5b584325360c627056f55cc4c06"


def _queries(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "test" / "queries.jsonl").open()]


def _all_specs() -> list[RefSpec]:
    specs = [RefSpec("corner", c) for c in ("top-left", "top-right", "bottom-left", "bottom-right")]
    specs += [RefSpec("extreme", s) for s in ("left", "right", "top", "bottom")]
    specs += [RefSpec("size", d) for d in ("largest", "smallest")]
    specs += [RefSpec("colour", c) for c in COLOURS]
    specs += [RefSpec("pattern", p) for p in PATTERNS]
    specs += [RefSpec("shape", s) for s in SHAPES]
    specs += [
        RefSpec("relation", side, ("red", "star")) for side in ("left", "right", "top", "bottom")
    ]
    return specs


def test_the_default_world_is_unchanged(tmp_path: Path) -> None:
    make_world(tmp_path / "w", seed=0, n_train=0, n_val=0, n_test=24)
    data = (tmp_path / "w" / "test" / "queries.jsonl").read_bytes()
    assert hashlib.sha256(data).hexdigest() == DEFAULT_WORLD_SHA256


def test_every_family_describes_the_same_scenes(tmp_path: Path) -> None:
    worlds = {}
    for phrasing in ("default", "train", *HELDOUT_FAMILIES):
        make_world(tmp_path / phrasing, seed=5, n_train=0, n_val=0, n_test=16, phrasing=phrasing)
        worlds[phrasing] = _queries(tmp_path / phrasing)
    keys = ("id", "box", "positives", "question_type", "detail", "objects")
    for a, b in itertools.combinations(worlds, 2):
        assert [{k: q[k] for k in keys} for q in worlds[a]] == [
            {k: q[k] for k in keys} for q in worlds[b]
        ]
        assert [q["question"] for q in worlds[a]] != [q["question"] for q in worlds[b]]
        for q in worlds[a]:
            img = f"test/images/{q['id']}.png"
            assert (tmp_path / a / img).read_bytes() == (tmp_path / b / img).read_bytes()
    for q in (q for name in HELDOUT_FAMILIES for q in worlds[name]):
        assert q["ref"].lower() in q["question"].lower()


def test_the_heldout_family_shares_no_wording_with_training() -> None:
    heldout = [FAMILIES[n] for n in HELDOUT_FAMILIES]
    train = [FAMILIES[n] for n in TRAIN_FAMILIES]
    for spec in _all_specs():
        train_forms = {f for fam in train for f in fam.refs(spec)}
        for fam in heldout:
            assert not set(fam.refs(spec)) & train_forms, spec
    train_frames = {t for fam in train for t in fam.templates}
    for fam in heldout:
        assert not set(fam.templates) & train_frames
    # Each training family words every kind of reference, and differently from the others.
    for spec in _all_specs():
        for fam in train:
            assert fam.refs(spec) and all(isinstance(f, str) and f for f in fam.refs(spec))
    assert FAMILIES["synonyms"].refs(RefSpec("size", "largest")) != FAMILIES["plain"].refs(
        RefSpec("size", "largest")
    )


def test_balanced_worlds_ask_as_many_smallest_as_largest(tmp_path: Path) -> None:
    make_world(tmp_path / "b", seed=2, n_train=0, n_val=0, n_test=80, balance_subtypes=True)
    qs = _queries(tmp_path / "b")
    size = Counter(q["detail"] for q in qs if q["question_type"] == "size")
    assert size["largest"] == size["smallest"] == 10
    position = Counter(q["detail"].split(":")[0] for q in qs if q["question_type"] == "position")
    assert position["corner"] == position["extreme"] == 10


def test_phrasing_names_resolve_or_fail_clearly() -> None:
    assert resolve_phrasing("train") == TRAIN_FAMILIES
    assert resolve_phrasing("plain, heldout") == ("plain", "heldout")
    with pytest.raises(ConfigError, match="unknown phrasing family 'nope'"):
        resolve_phrasing("nope")
    with pytest.raises(ConfigError, match="cannot be mixed"):
        resolve_phrasing("default,plain")
    with pytest.raises(ConfigError, match="balance_subtypes"):
        make_world("/nonexistent-never-written", n_test=1, balance_subtypes="yes")


def test_paraphrases_reword_the_same_question_and_change_nothing_else(tmp_path: Path) -> None:
    make_world(tmp_path / "p0", seed=3, n_train=0, n_val=0, n_test=12, phrasing="train")
    make_world(
        tmp_path / "p4", seed=3, n_train=0, n_val=0, n_test=12, phrasing="train", paraphrases=4
    )
    plain, worded = _queries(tmp_path / "p0"), _queries(tmp_path / "p4")
    assert all("paraphrases" not in q for q in plain)
    train_frames = [t for name in TRAIN_FAMILIES for t in FAMILIES[name].templates]
    for a, b in zip(plain, worded):
        extra = b.pop("paraphrases")
        assert a == b  # same scene, same question, same reference
        assert 1 <= len(extra) <= 4 and len(set(extra)) == len(extra)
        assert a["question"] not in extra
        for text in extra:
            # Each is a training frame around another wording of the same reference.
            assert any(_frames_match(frame, text) for frame in train_frames), text
    manifest = json.loads((tmp_path / "p4" / "world.json").read_text())
    assert manifest["scene_config"]["paraphrases"] == 4
    assert (
        "paraphrases"
        not in json.loads((tmp_path / "p0" / "world.json").read_text())["scene_config"]
    )
    with pytest.raises(ConfigError, match="paraphrases"):
        make_world("/nonexistent-never-written", n_test=1, paraphrases=-1)


def _frames_match(frame: str, text: str) -> bool:
    head, tail = frame.split("{ref}")
    return text.lower().startswith(head.lower()) and text.endswith(tail)

"""Dataset loaders: generic JSONL layout, E-VQA, InfoSeek; strict and lenient loading."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from region_rerank.errors import RegionRerankError
from region_rerank.eval.datasets import (
    DatasetFormatError,
    EvalDataset,
    EvalQuery,
    KBEntry,
    load_jsonl_dataset,
    load_pools_jsonl,
    write_jsonl_dataset,
)
from region_rerank.eval.datasets_evqa import (
    EVQA_COLUMNS,
    load_evqa,
    load_evqa_kb,
    write_evqa_csv,
)
from region_rerank.eval.datasets_infoseek import load_entity_map, load_infoseek
from region_rerank.eval.kb_text import KBTextConfig, entry_text
from region_rerank.types import Box, Candidate

# ---------------------------------------------------------------- helpers


def _write_lines(path: Path, lines: list[Any]) -> Path:
    """Objects are dumped as JSON; strings are written verbatim (to make broken lines)."""
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    path.write_text(text, encoding="utf-8")
    return path


KB_ROWS = [
    {"id": "k1", "text": "Eiffel Tower", "images": ["imgs/k1.png"], "title": "Eiffel"},
    {"id": "k2", "text": None, "images": ["https://example.org/k2.jpg"]},
    {"id": "k3", "text": "Big Ben"},
]
Q1 = {
    "id": "q1",
    "image": "imgs/q1.jpg",
    "question": "When was it built?",
    "positives": ["k1"],
    "box": [1, 2, 30, 40],
    "question_type": "templated",
    "answers": ["1889"],
}
Q2 = {"id": "q2", "image": "/abs/q2.jpg", "question": "Where?", "positives": ["k3", "k2"]}
POOLS = [
    {"query_id": "q1", "candidates": [{"id": "k2", "score": 0.9}, {"id": "k1", "score": 0.5}]},
    {"query_id": "q2", "candidates": []},
]


def _generic(
    tmp_path: Path,
    queries: list[Any] | None = None,
    kb: list[Any] | None = None,
    pools: list[Any] | None = None,
) -> Path:
    _write_lines(tmp_path / "kb.jsonl", KB_ROWS if kb is None else kb)
    _write_lines(tmp_path / "queries.jsonl", [Q1, Q2] if queries is None else queries)
    if pools is not None:
        _write_lines(tmp_path / "pools.jsonl", pools)
    return tmp_path


# ---------------------------------------------------------------- generic JSONL layout


def test_load_generic_layout(tmp_path: Path) -> None:
    ds = load_jsonl_dataset(_generic(tmp_path, pools=POOLS), name="toy")
    assert ds.name == "toy" and len(ds) == 2 and ds.skipped == 0
    q1 = ds.query("q1")
    assert q1.image == tmp_path / "imgs" / "q1.jpg"  # relative path resolved to the folder
    assert q1.question == "When was it built?"
    assert q1.positives == frozenset({"k1"})
    assert q1.box == Box(1, 2, 30, 40)
    assert q1.question_type == "templated"
    assert q1.metadata == {"answers": ["1889"]}  # extra fields kept
    q2 = ds.query("q2")
    assert q2.image == Path("/abs/q2.jpg") and q2.box is None and q2.question_type is None
    assert ds.kb["k1"].images == (tmp_path / "imgs" / "k1.png",)
    assert ds.kb["k1"].metadata == {"title": "Eiffel"}
    assert ds.kb["k2"].images == ("https://example.org/k2.jpg",)  # URL kept verbatim
    assert ds.kb["k2"].text is None and ds.kb["k3"].images == ()
    assert ds.pools == {"q1": (("k2", 0.9), ("k1", 0.5)), "q2": ()}
    cands = ds.candidates("q1")
    assert [c.id for c in cands] == ["k2", "k1"]  # retrieval order kept
    assert [c.retrieval_score for c in cands] == [0.9, 0.5]
    assert isinstance(cands[0], Candidate) and cands[0].images == ("https://example.org/k2.jpg",)
    assert ds.candidates("q2") == []
    query = q1.to_query()
    assert (query.id, query.question, query.image) == ("q1", q1.question, q1.image)
    with pytest.raises(KeyError):
        ds.query("nope")


def test_generic_layout_without_pools_and_with_blank_lines(tmp_path: Path) -> None:
    _generic(tmp_path)
    with open(tmp_path / "queries.jsonl", "a", encoding="utf-8") as fh:
        fh.write("\n   \n")
    ds = load_jsonl_dataset(tmp_path)
    assert ds.name == tmp_path.name and ds.pools == {} and len(ds) == 2


def test_generic_layout_missing_file(tmp_path: Path) -> None:
    _write_lines(tmp_path / "kb.jsonl", KB_ROWS)
    with pytest.raises(FileNotFoundError, match=r"queries\.jsonl"):
        load_jsonl_dataset(tmp_path)


BAD_CASES = [
    # (id, file, rows of that file with the broken one, expected line, message)
    ("bad-json", "queries", [Q1, '{"id": "q2", "image": '], 2, "invalid JSON"),
    ("not-object", "queries", [Q1, "[1, 2]"], 2, "expected a JSON object"),
    (
        "missing-field",
        "queries",
        [{k: v for k, v in Q1.items() if k != "question"}, Q2],
        1,
        "missing required field 'question'",
    ),
    (
        "wrong-type-positives",
        "queries",
        [Q1, {**Q2, "positives": "k3"}],
        2,
        "'positives' must be a list of strings",
    ),
    (
        "wrong-type-question",
        "queries",
        [Q1, {**Q2, "question": 7}],
        2,
        "'question' must be a string",
    ),
    ("id-float", "queries", [Q1, {**Q2, "id": 1.5}], 2, "'id' must be a non-empty string"),
    ("box-length", "queries", [Q1, {**Q2, "box": [1, 2, 3]}], 2, r"4 numbers\), got 3 values"),
    ("box-inverted", "queries", [Q1, {**Q2, "box": [10, 10, 5, 5]}], 2, "inverted"),
    ("box-nan-type", "queries", [Q1, {**Q2, "box": [0, 0, "5", 5]}], 2, "must be a number"),
    (
        "dup-query",
        "queries",
        [Q1, {**Q2, "id": "q1"}],
        2,
        "duplicate query id 'q1' .first on line 1",
    ),
    ("dup-kb", "kb", [*KB_ROWS, {"id": "k1"}], 4, "duplicate KB id 'k1'"),
    (
        "kb-images-type",
        "kb",
        [KB_ROWS[0], {"id": "k2", "images": "x.png"}, KB_ROWS[2]],
        2,
        "'images' must be a list of strings",
    ),
    (
        "pool-unknown-kb",
        "pools",
        [POOLS[0], {"query_id": "q2", "candidates": [{"id": "nope", "score": 1}]}],
        2,
        "unknown KB id 'nope'",
    ),
    (
        "pool-unknown-query",
        "pools",
        [{"query_id": "zz", "candidates": []}, POOLS[0]],
        1,
        "unknown query id 'zz'",
    ),
    (
        "pool-score-type",
        "pools",
        [POOLS[0], {"query_id": "q2", "candidates": [{"id": "k1", "score": "hi"}]}],
        2,
        "score must be a number",
    ),
    (
        "pool-candidates-type",
        "pools",
        [POOLS[0], {"query_id": "q2", "candidates": {"id": "k1"}}],
        2,
        "'candidates' must be a list",
    ),
    ("pool-duplicate", "pools", [POOLS[0], POOLS[0]], 2, "second pool for query 'q1'"),
]


def _write_case(tmp_path: Path, file: str, rows: list[Any]) -> None:
    _generic(
        tmp_path,
        queries=rows if file == "queries" else None,
        kb=rows if file == "kb" else None,
        pools=rows if file == "pools" else None,
    )


@pytest.mark.parametrize(
    ("file", "rows", "line", "message"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_malformed_rows_strict(
    tmp_path: Path, file: str, rows: list[Any], line: int, message: str
) -> None:
    _write_case(tmp_path, file, rows)
    with pytest.raises(DatasetFormatError, match=message) as info:
        load_jsonl_dataset(tmp_path)
    err = info.value
    assert err.path == str(tmp_path / f"{file}.jsonl") and err.line == line
    assert str(err).startswith(f"{tmp_path / f'{file}.jsonl'}, line {line}: ")
    assert isinstance(err, RegionRerankError) and isinstance(err, ValueError)


@pytest.mark.parametrize(
    ("file", "rows", "line", "message"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_malformed_rows_lenient(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    file: str,
    rows: list[Any],
    line: int,
    message: str,
) -> None:
    _write_case(tmp_path, file, rows)
    with caplog.at_level(logging.WARNING, logger="region_rerank.eval.datasets"):
        ds = load_jsonl_dataset(tmp_path, lenient=True)
    assert ds.skipped == 1
    assert "skipped 1 malformed row" in caplog.text and f"line {line}" in caplog.text
    good_rows = [r for i, r in enumerate(rows, start=1) if i != line]
    if file == "queries":
        assert [q.id for q in ds.queries] == [r["id"] for r in good_rows]
    elif file == "kb":
        assert sorted(ds.kb) == sorted({r["id"] for r in good_rows})
    else:
        assert len(ds.pools) == 1  # the broken pool row is dropped, the other kept


def test_invalid_utf8_line(tmp_path: Path) -> None:
    _generic(tmp_path)
    with open(tmp_path / "queries.jsonl", "ab") as fh:
        fh.write(b'{"id": "q3", "question": "\xff"}\n')
    with pytest.raises(DatasetFormatError, match="line 3: not valid UTF-8"):
        load_jsonl_dataset(tmp_path)
    assert load_jsonl_dataset(tmp_path, lenient=True).skipped == 1


def test_lenient_counts_across_files(tmp_path: Path) -> None:
    _generic(
        tmp_path,
        queries=[Q1, "oops", {**Q2, "box": [1]}],
        kb=[*KB_ROWS, "{"],
        pools=[POOLS[0], {"query_id": "q1"}],
    )
    ds = load_jsonl_dataset(tmp_path, lenient=True)
    assert ds.skipped == 4 and [q.id for q in ds.queries] == ["q1"] and list(ds.pools) == ["q1"]


def test_check_images(tmp_path: Path) -> None:
    _generic(tmp_path)
    with pytest.raises(DatasetFormatError, match="line 1: image file not found"):
        load_jsonl_dataset(tmp_path, check_images=True)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "q1.jpg").write_bytes(b"x")
    ds = load_jsonl_dataset(tmp_path, check_images=True, lenient=True)
    assert [q.id for q in ds.queries] == ["q1"] and ds.skipped == 1  # /abs/q2.jpg is missing


# ---------------------------------------------------------------- dataset object + writer


def test_eval_dataset_validates_itself() -> None:
    kb = {"k1": KBEntry("k1", "t")}
    q = EvalQuery("q1", "img.png", "?", frozenset({"k1"}))
    with pytest.raises(DatasetFormatError, match="duplicate query id 'q1'"):
        EvalDataset("d", (q, q), kb)
    with pytest.raises(DatasetFormatError, match="unknown KB ids \\['k9'\\]"):
        EvalDataset("d", (q,), kb, pools={"q1": (("k9", 1.0),)})
    with pytest.raises(DatasetFormatError, match="pool for unknown query 'q7'"):
        EvalDataset("d", (q,), kb, pools={"q7": ()})


def test_kb_entry_to_candidate() -> None:
    entry = KBEntry("k1", "text", ["a.png", "b.png"], {"title": "T"})  # type: ignore[arg-type]
    cand = entry.to_candidate(0.7)
    assert (cand.id, cand.text, cand.images, cand.retrieval_score) == (
        "k1",
        "text",
        ("a.png", "b.png"),
        0.7,
    )
    assert dict(cand.metadata) == {"title": "T"}
    assert entry.to_candidate().retrieval_score is None
    assert len({entry, KBEntry("k1", "text", ("a.png", "b.png"), {"title": "T"})}) == 1


def test_round_trip_generic_layout(tmp_path: Path) -> None:
    pil = pytest.importorskip("PIL.Image")
    from region_rerank.images import load_image

    out = tmp_path / "out"
    inside = out / "imgs" / "q1.jpg"
    picture = pil.new("RGB", (7, 5), (10, 200, 30))
    kb = {
        "k1": KBEntry("k1", "Eiffel", (inside.with_name("k1.png"),), {"title": "E", "n": 3}),
        "k2": KBEntry("k2", None, ("https://example.org/k2.jpg", picture)),
    }
    queries = (
        EvalQuery(
            "q1",
            inside,
            "When?",
            frozenset({"k1"}),
            Box(1.5, 2, 30, 40),
            "templated",
            {"answers": ["1889"]},
        ),
        EvalQuery("q2", Path("/elsewhere/q2.jpg"), "Wh\u00e9re?", frozenset({"k2", "k1"})),
        EvalQuery("q3", picture, "What colour?", frozenset()),
    )
    ds = EvalDataset("toy", queries, kb, pools={"q1": (("k2", 0.25), ("k1", -1.0)), "q3": ()})
    assert write_jsonl_dataset(ds, out) == out
    assert json.loads((out / "queries.jsonl").read_text().splitlines()[0])["image"] == "imgs/q1.jpg"
    back = load_jsonl_dataset(out, name="toy")
    for a, b in zip(ds.queries, back.queries, strict=True):
        assert (a.id, a.question, a.positives, a.box, a.question_type, dict(a.metadata)) == (
            b.id,
            b.question,
            b.positives,
            b.box,
            b.question_type,
            dict(b.metadata),
        )
    assert back.queries[0].image == inside and back.queries[1].image == Path("/elsewhere/q2.jpg")
    saved = back.queries[2].image
    assert saved == out / "images" / "query_000002.png"
    assert load_image(saved).getpixel((3, 2)) == (10, 200, 30)  # in-memory image written as PNG
    assert back.kb["k1"] == kb["k1"]
    assert back.kb["k2"].images[0] == "https://example.org/k2.jpg"
    assert back.kb["k2"].images[1] == out / "images" / "kb_000001_1.png"
    assert back.pools == ds.pools
    # writing again without pools removes the stale pools file
    write_jsonl_dataset(EvalDataset("toy", back.queries, back.kb), out)
    assert not (out / "pools.jsonl").exists() and load_jsonl_dataset(out).pools == {}


def test_writer_rejects_bad_metadata(tmp_path: Path) -> None:
    kb = {"k1": KBEntry("k1", "t")}
    clash = EvalQuery("q1", "a.png", "?", metadata={"positives": ["x"]})
    with pytest.raises(ValueError, match="clash"):
        write_jsonl_dataset(EvalDataset("d", (clash,), kb), tmp_path)
    unserialisable = EvalQuery("q1", "a.png", "?", metadata={"obj": object()})
    with pytest.raises(ValueError, match="cannot be written as JSON"):
        write_jsonl_dataset(EvalDataset("d", (unserialisable,), kb), tmp_path)


# ---------------------------------------------------------------- E-VQA

LONG = " ".join(["word"] * 200)  # 999 characters
EVQA_KB = {
    "https://en.wikipedia.org/wiki/Eiffel_Tower": {
        "title": "Eiffel Tower",
        "section_titles": ["Intro", "History"],
        "section_texts": ["A tower in Paris.", "Built 1887-1889."],
        "image_urls": ["https://upload.example/eiffel.jpg"],
        "url": "https://en.wikipedia.org/wiki/Eiffel_Tower",
    },
    "https://en.wikipedia.org/wiki/Monarch": {
        "title": "Monarch butterfly",
        "section_titles": ["Intro"],
        "section_texts": [LONG],
        "image_urls": [],
    },
    "https://en.wikipedia.org/wiki/Oak": {"title": "Oak", "section_texts": []},
}
EIFFEL, MONARCH, OAK = list(EVQA_KB)


def _evqa_row(**kw: str) -> dict[str, str]:
    row = dict.fromkeys(EVQA_COLUMNS, "")
    row.update(
        question="What year?",
        answer="1889",
        dataset_image_ids="img1",
        dataset_name="landmarks",
        question_type="templated",
        wikipedia_url=EIFFEL,
    )
    row.update(kw)
    return row


def _evqa_files(tmp_path: Path, rows: list[dict[str, str]]) -> tuple[Path, Path]:
    csv_path = write_evqa_csv(rows, tmp_path / "test.csv")
    kb_path = tmp_path / "kb.json"
    kb_path.write_text(json.dumps(EVQA_KB), encoding="utf-8")
    return csv_path, kb_path


def test_entry_text_reference_and_word_boundary() -> None:
    assert entry_text("Oak", []) == "Oak\n"  # the reference keeps the newline
    assert entry_text("T", ["a b", "", "c", "d"]) == "T\na b\n\nc"  # first three sections
    clean = KBTextConfig(skip_empty=True)
    assert entry_text("Oak", [], clean) == "Oak"
    assert entry_text("T", ["a b", "", "c", "d"], clean) == "T\na b\nc\nd"
    # text[:22] = 'Title\nword word word w'; last space at 20 >= 17.6 -> cut back to 20
    cut = KBTextConfig(max_chars=22, word_boundary=True)
    assert entry_text("Title", [LONG], cut) == "Title\nword word word"
    assert entry_text("Title", [LONG], KBTextConfig(max_chars=22)) == "Title\nword word word w"
    with pytest.raises(RegionRerankError):
        KBTextConfig(max_chars=0)


def test_load_evqa(tmp_path: Path) -> None:
    rows = [
        _evqa_row(evidence="line one\nline two"),  # quoted multi-line field (lines 2-3)
        _evqa_row(
            question="Which species?",
            answer="monarch|danaus plexippus&&milkweed butterfly",
            dataset_image_ids="7|8",
            dataset_name="inaturalist",
            question_type="multi_answer",
            wikipedia_url=MONARCH,
        ),
        _evqa_row(question_type="2_hop", wikipedia_url=f"{EIFFEL}|{OAK}"),
        _evqa_row(
            question="Tree?",
            dataset_image_ids="0fe1d2c3b4a59687",
            question_type="automatic",
            wikipedia_url=OAK,
            encyclopedic_vqa_split="test",
        ),
    ]
    csv_path, kb_path = _evqa_files(tmp_path, rows)
    ds = load_evqa(csv_path, kb_path, tmp_path / "images")
    assert ds.name == "evqa" and ds.dropped == {"2_hop": 1} and ds.skipped == 0
    assert [q.id for q in ds.queries] == ["E-VQA_0", "E-VQA_1", "E-VQA_2"]  # after filtering
    q0, q1, q3 = ds.queries
    assert q0.image == tmp_path / "images" / "landmarks" / "i" / "m" / "g" / "img1.jpg"
    assert q0.positives == frozenset({EIFFEL}) and q0.question_type == "templated"
    assert q0.metadata["answers"] == ["1889"] and q0.metadata["evidence"] == "line one\nline two"
    # no id map: the canonical flat path (the error in check_images mode names the map)
    assert q1.image == tmp_path / "images" / "inaturalist" / "7.jpg"
    assert q1.metadata["answers"] == ["monarch", "danaus plexippus&&milkweed butterfly"]
    assert q1.metadata["answer_parts"] == [["monarch"], ["danaus plexippus", "milkweed butterfly"]]
    assert q1.metadata["image_id"] == "7" and q1.metadata["dataset_name"] == "inaturalist"
    assert q3.positives == frozenset({OAK}) and q3.question_type == "automatic"
    assert q3.image == tmp_path / "images" / "landmarks" / "0" / "f" / "e" / "0fe1d2c3b4a59687.jpg"
    assert ds.kb[EIFFEL].text == "Eiffel Tower\nA tower in Paris.\nBuilt 1887-1889."
    assert ds.kb[EIFFEL].images == ("https://upload.example/eiffel.jpg",)
    assert ds.kb[EIFFEL].metadata == {"title": "Eiffel Tower", "url": EIFFEL}
    monarch = ds.kb[MONARCH].text
    assert monarch == ("Monarch butterfly\n" + LONG)[:500]
    assert ds.kb[OAK].text == "Oak\n" and ds.kb[OAK].images == ()
    assert ds.pools == {}
    # keeping 2_hop and other image patterns
    ds2 = load_evqa(
        csv_path,
        kb_path,
        tmp_path,
        drop_question_types=(),
        image_pattern="{dataset_name}/{image_id}.png",
        kb_images="none",
    )
    assert len(ds2) == 4 and ds2.dropped == {}
    assert ds2.queries[1].image == tmp_path / "inaturalist" / "7.png"
    assert ds2.queries[2].positives == frozenset({EIFFEL})
    assert ds2.queries[2].metadata["hop_urls"] == [EIFFEL, OAK]
    assert ds2.kb[EIFFEL].images == ()
    ds3 = load_evqa(
        csv_path,
        kb_path,
        tmp_path,
        image_pattern=lambda i, d: f"mem://{d}/{i}",
        kb_images=lambda key, entry: [f"local/{entry['title']}.jpg"],
    )
    assert ds3.queries[0].image == "mem://landmarks/img1"
    assert ds3.kb[OAK].images == ("local/Oak.jpg",)


def test_evqa_with_pools_and_id_column(tmp_path: Path) -> None:
    rows = [_evqa_row(id="a"), _evqa_row(id="b", wikipedia_url=OAK)]
    csv_path, kb_path = _evqa_files(tmp_path, rows)
    pools = _write_lines(
        tmp_path / "pools.jsonl", [{"query_id": "b", "candidates": [{"id": OAK, "score": 2}]}]
    )
    ds = load_evqa(csv_path, kb_path, tmp_path, pools_path=pools)
    assert [q.id for q in ds.queries] == ["a", "b"]
    assert ds.pools == {"b": ((OAK, 2.0),)} and ds.candidates("b")[0].text == "Oak\n"


def test_evqa_malformed_rows_name_the_csv_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        _evqa_row(evidence="multi\nline"),  # lines 2-3
        _evqa_row(wikipedia_url=""),  # line 4
        _evqa_row(dataset_image_ids=" | "),  # line 5
    ]
    csv_path, kb_path = _evqa_files(tmp_path, rows)
    with pytest.raises(DatasetFormatError, match="line 4: empty 'wikipedia_url'") as info:
        load_evqa(csv_path, kb_path, tmp_path)
    assert info.value.path == str(csv_path)
    with caplog.at_level(logging.WARNING):
        ds = load_evqa(csv_path, kb_path, tmp_path, lenient=True)
    assert ds.skipped == 2 and len(ds) == 1
    assert "line 4" in caplog.text and "line 5: empty 'dataset_image_ids'" in caplog.text


def test_evqa_ragged_row_and_missing_columns(tmp_path: Path) -> None:
    _, kb_path = _evqa_files(tmp_path, [_evqa_row()])
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(",".join(EVQA_COLUMNS) + "\nq,a,img,ds,templated\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="line 2: row has a different number of fields"):
        load_evqa(ragged, kb_path, tmp_path)
    missing = tmp_path / "missing.csv"
    with open(missing, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerow(["question", "answer"])
    with pytest.raises(DatasetFormatError, match=r"line 1: missing column\(s\)") as info:
        load_evqa(missing, kb_path, tmp_path, lenient=True)  # fatal even when lenient
    assert "wikipedia_url" in str(info.value)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="empty file"):
        load_evqa(empty, kb_path, tmp_path)


def test_evqa_kb_errors(tmp_path: Path) -> None:
    bad = tmp_path / "kb.json"
    bad.write_text('{\n  "u": {"title": "x"},\n  "v": \n}', encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="line 4: invalid JSON"):
        load_evqa_kb(bad)
    bad.write_text(json.dumps(["not", "an", "object"]), encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="one JSON object"):
        load_evqa_kb(bad)
    bad.write_text(
        json.dumps(
            {"u": {"title": 3}, "v": {"title": "ok", "section_texts": "s"}, "w": {"title": "fine"}}
        ),
        encoding="utf-8",
    )
    with pytest.raises(DatasetFormatError, match="KB entry 'u': field 'title' must be a string"):
        load_evqa_kb(bad)
    kb = load_evqa_kb(bad, lenient=True)
    assert list(kb) == ["w"] and kb["w"].text == "fine\n"


# ---------------------------------------------------------------- InfoSeek

ENTITY_MAP = {"Q243": EIFFEL, "Q26": MONARCH}
INFOSEEK: list[dict[str, Any]] = [
    {
        "data_id": "infoseek_val_0001",
        "image_id": "oven_01000001",
        "question": "When was this built?",
        "answer": ["1889"],
        "answer_eval": [{"wikidata": 1889, "range": [1887, 1889]}],
        "data_split": "val_unseen_entity",
    },
    {
        "data_id": "infoseek_val_0002",
        "image_id": "oven_02000002",
        "question": "What does it eat?",
        "answer": ["milkweed", "nectar"],
        "answer_eval": ["milkweed"],
        "data_split": "val_unseen_question",
    },
]
WITHKB = [
    {"data_id": "infoseek_val_0001", "entity_id": "Q243", "entity_text": "Eiffel Tower"},
    {"data_id": "infoseek_val_0002", "entity_id": "Q26", "entity_text": "Monarch"},
]


def test_load_infoseek_with_an_entity_map(tmp_path: Path) -> None:
    questions = _write_lines(tmp_path / "infoseek_val.jsonl", INFOSEEK)
    withkb = _write_lines(tmp_path / "infoseek_val_withkb.jsonl", WITHKB)
    _, kb_path = _evqa_files(tmp_path, [_evqa_row()])
    emap = tmp_path / "entity_map.json"
    emap.write_text(json.dumps(ENTITY_MAP), encoding="utf-8")
    assert load_entity_map(emap) == ENTITY_MAP
    ds = load_infoseek(questions, withkb, kb_path, tmp_path / "oven", entity_map=emap)
    assert ds.name == "infoseek" and len(ds) == 2
    q = ds.query("infoseek_val_0001")
    assert q.image == tmp_path / "oven" / "01" / "oven_01000001.jpg"
    assert q.positives == frozenset({EIFFEL}) and q.question_type == "val_unseen_entity"
    assert q.metadata["answers"] == ["1889"] and q.metadata["entity_id"] == "Q243"
    assert q.metadata["answer_eval"] == INFOSEEK[0]["answer_eval"]
    assert ds.query("infoseek_val_0002").positives == frozenset({MONARCH})


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({**INFOSEEK[1], "answer": [1, 2]}, "'answer' must be a list of strings"),
        ({**INFOSEEK[1], "question": None}, "'question' must be a string"),
        ({**INFOSEEK[1], "image_id": ""}, "'image_id' must be a non-empty string"),
        ('{"data_id": ', "invalid JSON"),
    ],
)
def test_infoseek_malformed_records(tmp_path: Path, record: Any, message: str) -> None:
    questions = _write_lines(tmp_path / "is.jsonl", [INFOSEEK[0], record])
    withkb = _write_lines(tmp_path / "is_withkb.jsonl", WITHKB)
    _, kb_path = _evqa_files(tmp_path, [_evqa_row()])
    with pytest.raises(DatasetFormatError, match=f"line 2: .*{message}") as info:
        load_infoseek(questions, withkb, kb_path, tmp_path, entity_map=ENTITY_MAP)
    assert info.value.path == str(questions)
    ds = load_infoseek(questions, withkb, kb_path, tmp_path, entity_map=ENTITY_MAP, lenient=True)
    assert ds.skipped == 1 and [q.id for q in ds.queries] == ["infoseek_val_0001"]


def test_infoseek_entity_without_kb_entry_is_a_row_error(tmp_path: Path) -> None:
    questions = _write_lines(tmp_path / "is.jsonl", INFOSEEK)
    withkb = _write_lines(tmp_path / "is_withkb.jsonl", WITHKB)
    _, kb_path = _evqa_files(tmp_path, [_evqa_row()])
    # 'Monarch' is not a KB title ('Monarch butterfly') and no entity map is given
    with pytest.raises(DatasetFormatError, match=r"line 2: entity Q26 \('Monarch'\) has no KB"):
        load_infoseek(questions, withkb, kb_path, tmp_path)
    ds = load_infoseek(questions, withkb, kb_path, tmp_path, lenient=True)
    assert [q.positives for q in ds.queries] == [frozenset({EIFFEL})]  # title match


def test_entity_map_errors(tmp_path: Path) -> None:
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"Q1": 5}), encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="'Q1' maps to a non-string value"):
        load_entity_map(bad)


def test_load_pools_jsonl_standalone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kb = {"k1": KBEntry("k1", "t"), "k2": KBEntry("k2", "u")}
    path = _write_lines(
        tmp_path / "pools.jsonl",
        [
            {"query_id": "q1", "candidates": [{"id": "k2", "score": 1}, {"id": "k1", "score": 0}]},
            {"query_id": "q2", "candidates": [{"id": "k3", "score": 1}]},
        ],
    )
    with pytest.raises(DatasetFormatError, match="line 2: candidates\\[0\\] names unknown KB id"):
        load_pools_jsonl(path, kb, {"q1", "q2"})
    with caplog.at_level(logging.WARNING):
        pools = load_pools_jsonl(path, kb, {"q1", "q2"}, lenient=True)
    assert pools == {"q1": (("k2", 1.0), ("k1", 0.0))}
    assert "skipped 1 malformed row" in caplog.text

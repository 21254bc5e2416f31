"""The E-VQA and InfoSeek loaders on files shaped like the released ones (issue 15).

Fixtures: tests/real_format_fixtures.py (each builder cites the public source of its
schema). One test per mismatch of issue 15, then the InfoSeek files as released.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from region_rerank.eval.datasets import DatasetFormatError
from region_rerank.eval.datasets_evqa import load_evqa, load_evqa_kb
from region_rerank.eval.datasets_infoseek import load_infoseek
from region_rerank.eval.kb_text import KBTextConfig
from tests.real_format_fixtures import (
    BIGBEN,
    EIFFEL,
    EVQA_KB,
    EVQA_ROWS,
    GLD_A,
    GLD_C,
    GUSTAVE,
    INAT_A,
    INAT_B,
    MONARCH,
    OAK,
    OBSERVED_ORDER,
    OVEN_A,
    OVEN_B,
    OVEN_C,
    README_ORDER,
    kb_entry,
    make_evqa,
    make_infoseek,
    write_evqa_csv,
)

# ---------------------------------------------------------------- E-VQA, issue 15 items 1-6


def test_evqa_images_resolve_in_the_released_layouts(tmp_path: Path) -> None:
    """Item 1: GLDv2 hex ids under a/b/c/<id>.jpg, iNaturalist numeric ids via id2name."""
    f = make_evqa(tmp_path)
    ds = load_evqa(f.csv, f.kb, f.images, id_map=f.id_map, check_images=True)
    eiffel, monarch, oak, bigben = ds.queries
    assert eiffel.image == f.image_paths[GLD_A]
    assert eiffel.image == f.images / "landmarks" / "0" / "1" / "2" / f"{GLD_A}.jpg"
    assert bigben.image == f.images / "landmarks" / "a" / "1" / "b" / f"{GLD_C}.jpg"
    assert monarch.image == f.image_paths[INAT_A]
    assert oak.image == f.image_paths[INAT_B]
    assert all(Path(str(q.image)).is_file() for q in ds.queries)


def test_evqa_missing_image_is_a_clear_row_error(tmp_path: Path) -> None:
    f = make_evqa(tmp_path)
    f.image_paths[GLD_C].unlink()
    with pytest.raises(
        DatasetFormatError, match=r"line \d+: image file not found: .*a1b2c3d4e5f60718"
    ):
        load_evqa(f.csv, f.kb, f.images, id_map=f.id_map, check_images=True)
    ds = load_evqa(f.csv, f.kb, f.images, id_map=f.id_map, check_images=True, lenient=True)
    assert ds.skipped == 1 and len(ds) == 3


def test_evqa_inaturalist_without_id_map_names_the_missing_map(tmp_path: Path) -> None:
    f = make_evqa(tmp_path)
    with pytest.raises(DatasetFormatError, match="id_map"):
        load_evqa(f.csv, f.kb, f.images, check_images=True)


def test_evqa_answers_pipe_alternatives_and_multi_answer_parts(tmp_path: Path) -> None:
    """Item 2: '|' separates annotators' alternatives, '&&' the parts of a multi_answer."""
    f = make_evqa(tmp_path)
    ds = load_evqa(f.csv, f.kb, f.images, id_map=f.id_map)
    eiffel, _, oak, _ = ds.queries
    assert eiffel.metadata["answers"] == ["1889", "in 1889"]
    assert "answer_parts" not in eiffel.metadata
    multi = oak.metadata
    assert multi["answers"] == ["jays&&pigeons&&squirrels", "jays&&squirrels"]
    assert multi["answer_parts"] == [["jays", "pigeons", "squirrels"], ["jays", "squirrels"]]


def test_evqa_two_hop_url_is_a_chain_not_alternatives(tmp_path: Path) -> None:
    """Item 3: only 2_hop rows carry two URLs, and they are consecutive hops."""
    f = make_evqa(tmp_path)
    ds = load_evqa(f.csv, f.kb, f.images, id_map=f.id_map, drop_question_types=())
    hop = next(q for q in ds.queries if q.question_type == "2_hop")
    assert hop.positives == frozenset({EIFFEL})  # the entity shown in the image
    assert hop.metadata["hop_urls"] == [EIFFEL, GUSTAVE]
    bad = [dict(EVQA_ROWS[1], wikipedia_url=f"{MONARCH}|{OAK}")]
    csv_path = write_evqa_csv(tmp_path / "bad.csv", bad, OBSERVED_ORDER)
    with pytest.raises(DatasetFormatError, match=r"line 2: .*only 2_hop rows"):
        load_evqa(csv_path, f.kb, f.images, id_map=f.id_map)


def test_evqa_query_ids_count_rows_after_filtering(tmp_path: Path) -> None:
    """Item 4: E-VQA_{i} with i the index after dropping 2_hop, as EchoSight / OMGM key pools."""
    f = make_evqa(tmp_path)
    ds = load_evqa(f.csv, f.kb, f.images, id_map=f.id_map)
    assert [q.id for q in ds.queries] == ["E-VQA_0", "E-VQA_1", "E-VQA_2", "E-VQA_3"]
    assert ds.query("E-VQA_3").positives == frozenset({BIGBEN})  # raw row 4
    assert ds.dropped == {"2_hop": 1}


def test_evqa_kb_text_matches_the_reference_assembly(tmp_path: Path) -> None:
    """Item 5: title + first three sections joined by newlines, cut at 500 characters."""
    f = make_evqa(tmp_path)
    kb = load_evqa_kb(f.kb)
    for url, raw in EVQA_KB.items():
        expected = (raw["title"] + "\n" + "\n".join(raw["section_texts"][:3]))[:500]
        assert kb[url].text == expected
    assert len(kb[EIFFEL].text or "") == 500
    assert kb[MONARCH].text == "Monarch butterfly\nA milkweed butterfly.\n\nWingspan 8.9-10.2 cm."
    # configurable: every non-empty section, no cut
    full = load_evqa_kb(f.kb, text=KBTextConfig(max_sections=None, max_chars=None, skip_empty=True))
    assert full[MONARCH].text == (
        "Monarch butterfly\nA milkweed butterfly.\nWingspan 8.9-10.2 cm.\n"
        "Larvae feed on milkweed.\nIt migrates to Mexico."
    )


def test_evqa_kb_is_streamed_with_bounded_memory(tmp_path: Path) -> None:
    """Item 6: the KB JSON is never held whole; memory grows with the kept text only."""
    big = "x" * 200_000
    kb = {f"{EIFFEL}_{i}": kb_entry(f"Entry {i}", [(f"Entry {i}", big)] * 4) for i in range(60)}
    path = tmp_path / "kb.json"
    path.write_text(json.dumps(kb), encoding="utf-8")
    size = path.stat().st_size
    assert size > 40_000_000
    tracemalloc.start()
    try:
        loaded = load_evqa_kb(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(loaded) == 60 and all(len(e.text or "") == 500 for e in loaded.values())
    assert peak < size / 4, f"peak {peak} bytes for a {size}-byte KB"


@pytest.mark.parametrize("order", [OBSERVED_ORDER, README_ORDER], ids=["observed", "readme"])
def test_evqa_header_order_does_not_matter(tmp_path: Path, order: tuple[str, ...]) -> None:
    f = make_evqa(tmp_path, order=order)
    ds = load_evqa(f.csv, f.kb, f.images, id_map=f.id_map)
    assert [q.positives for q in ds.queries] == [
        frozenset({EIFFEL}),
        frozenset({MONARCH}),
        frozenset({OAK}),
        frozenset({BIGBEN}),
    ]
    first = ds.queries[0].metadata
    assert first["evidence"] == "The tower was completed in 1889,\nin time for the World's Fair."
    assert first["dataset_category_id"] == "185325" and first["image_ids"] == [GLD_A, GLD_A[::-1]]


# ---------------------------------------------------------------- InfoSeek as released


def test_infoseek_questions_join_withkb_by_data_id(tmp_path: Path) -> None:
    """Question files have no entity_id; *_withkb holds data_id / entity_id / entity_text."""
    f = make_infoseek(tmp_path)
    ds = load_infoseek(f.questions, f.withkb, f.wiki6m, f.images, qtype=f.qtype, check_images=True)
    assert [q.id for q in ds.queries] == [
        "infoseek_val_00000000",
        "infoseek_val_00000001",
        "infoseek_val_00000002",
    ]
    assert ds.dropped == {"no_withkb_record": 1}  # like every infoseek_test.jsonl record
    q0, q1, q2 = ds.queries
    assert q0.positives == frozenset({"Q178185"}) and q0.question_type == "String"
    assert q2.question_type == "Numerical"
    assert q0.metadata["entity_text"] == "Heat engine"
    assert q0.metadata["data_split"] == "val_unseen_question"
    assert q0.metadata["answers"] == ["work"]
    assert q2.metadata["answer_eval"] == [{"wikidata": 950.0, "range": [855.0, 1045.0]}]
    # OVEN layout: two-digit subfolders, .jpg or .JPEG
    assert q0.image == f.image_paths[OVEN_A] == f.images / "04" / f"{OVEN_A}.jpg"
    assert q1.image == f.images / "01" / f"{OVEN_B}.JPEG"
    assert q2.image == f.image_paths[OVEN_C]


@pytest.mark.parametrize("gz", [False, True], ids=["jsonl", "jsonl.gz"])
def test_infoseek_wiki6m_kb(tmp_path: Path, gz: bool) -> None:
    f = make_infoseek(tmp_path, gz_kb=gz)
    ds = load_infoseek(f.questions, f.withkb, f.wiki6m, f.images)
    assert sorted(ds.kb) == ["Q178185", "Q208196", "Q30574", "Q90"]
    heat = ds.kb["Q178185"]
    assert heat.text is not None and len(heat.text) == 500
    assert heat.text.startswith("Heat engine\nA heat engine is a system")
    assert heat.images == ("https://upload.wikimedia.org/wikipedia/commons/2/25/Heat_engine.png",)
    assert ds.kb["Q208196"].images == ()  # empty wikipedia_image_url
    assert heat.metadata["title"] == "Heat engine"
    # without the qtype file the question type is the record's data_split
    assert ds.queries[1].question_type == "val_unseen_entity"


def test_infoseek_with_a_kb_in_the_evqa_schema(tmp_path: Path) -> None:
    """The EchoSight / OMGM 100K KB is keyed by Wikipedia URL: entities are matched by an
    explicit entity map, else by entity_text == KB title."""
    f = make_infoseek(tmp_path)
    ds = load_infoseek(f.questions, f.withkb, f.kb100k, f.images)
    assert ds.queries[0].positives == frozenset({"https://en.wikipedia.org/wiki/Heat_engine"})
    emap = tmp_path / "entity_map.json"
    emap.write_text(json.dumps({"Q178185": "https://en.wikipedia.org/wiki/Paris"}), "utf-8")
    mapped = load_infoseek(f.questions, f.withkb, f.kb100k, f.images, entity_map=emap)
    assert mapped.queries[0].positives == frozenset({"https://en.wikipedia.org/wiki/Paris"})
    assert mapped.queries[1].positives == frozenset({"https://en.wikipedia.org/wiki/Giant_panda"})


def test_infoseek_withkb_problems_are_row_errors(tmp_path: Path) -> None:
    f = make_infoseek(tmp_path)
    f.withkb.write_text('{"data_id": "infoseek_val_00000000"}\n', encoding="utf-8")
    with pytest.raises(
        DatasetFormatError, match=r"withkb.jsonl, line 1: missing required field 'entity_id'"
    ):
        load_infoseek(f.questions, f.withkb, f.wiki6m, f.images)

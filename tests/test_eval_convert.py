"""``region-rerank convert evqa|infoseek|pools`` and ``check-images`` on files shaped like the
released ones (tests/real_format_fixtures.py cites the source of each schema)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from region_rerank.cli import main
from region_rerank.eval.datasets import DatasetFormatError, load_jsonl_dataset
from region_rerank.eval.datasets_evqa import load_evqa
from region_rerank.eval.datasets_infoseek import load_infoseek
from region_rerank.eval.pool_import import import_pools
from tests.real_format_fixtures import (
    BIGBEN,
    EIFFEL,
    GLD_C,
    MONARCH,
    OAK,
    echosight_pools,
    make_evqa,
    make_infoseek,
    omgm_pools,
)


def _same_queries(a: object, b: object) -> None:
    qa, qb = a.queries, b.queries  # type: ignore[attr-defined]
    assert [(q.id, str(q.image), q.question, q.positives, q.question_type) for q in qa] == [
        (q.id, str(q.image), q.question, q.positives, q.question_type) for q in qb
    ]


def test_convert_evqa_gives_the_loader_s_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = make_evqa(tmp_path / "raw")
    f.image_paths[GLD_C].unlink()
    out = tmp_path / "evqa"
    argv = ["convert", "evqa", "--csv", str(f.csv), "--kb", str(f.kb), "--images", str(f.images)]
    assert main([*argv, "--id-map", str(f.id_map), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 queries, 5 KB entries" in text
    assert "rows read 5; kept 4; dropped 2_hop 1; malformed skipped 0" in text
    assert "query images found 3 / 4" in text and GLD_C in text
    converted = load_jsonl_dataset(out)
    direct = load_evqa(f.csv, f.kb, f.images, id_map=f.id_map)
    _same_queries(converted, direct)
    assert {k: e.text for k, e in converted.kb.items()} == {k: e.text for k, e in direct.kb.items()}
    assert converted.query("E-VQA_2").metadata["answer_parts"] == [
        ["jays", "pigeons", "squirrels"],
        ["jays", "squirrels"],
    ]
    assert not list(out.glob("*.part"))
    # check-images before a long run: 3 of 4 exist; --strict fails on the missing one
    assert main(["check-images", "--data", str(out)]) == 0
    report = capsys.readouterr().out
    assert report.startswith("3 / 4 query images found (75.0%)") and GLD_C in report
    assert main(["check-images", "--data", str(out), "--strict"]) == 1


def test_convert_infoseek_wiki6m(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = make_infoseek(tmp_path / "raw", gz_kb=True)
    out = tmp_path / "infoseek"
    argv = ["convert", "infoseek", "--questions", str(f.questions), "--withkb", str(f.withkb)]
    argv += ["--kb", str(f.wiki6m), "--images", str(f.images), "--qtype", str(f.qtype)]
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 queries, 4 KB entries" in text and "dropped no_withkb_record 1" in text
    assert "query images found 3 / 3" in text
    converted = load_jsonl_dataset(out)
    direct = load_infoseek(f.questions, f.withkb, f.wiki6m, f.images, qtype=f.qtype)
    _same_queries(converted, direct)
    assert [q.question_type for q in converted.queries] == ["String", "String", "Numerical"]
    assert converted.query("infoseek_val_00000002").metadata["answer_eval"] == [
        {"wikidata": 950.0, "range": [855.0, 1045.0]}
    ]


def test_convert_infoseek_100k_kb_matches_titles(tmp_path: Path) -> None:
    f = make_infoseek(tmp_path / "raw")
    out = tmp_path / "infoseek"
    argv = ["convert", "infoseek", "--questions", str(f.questions), "--withkb", str(f.withkb)]
    argv += ["--kb", str(f.kb100k), "--images", str(f.images), "--out", str(out)]
    assert main(argv) == 0
    ds = load_jsonl_dataset(out)
    assert ds.queries[0].positives == frozenset({"https://en.wikipedia.org/wiki/Heat_engine"})


def test_convert_strict_error_is_reported_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = make_infoseek(tmp_path / "raw")
    f.withkb.write_text('{"data_id": "infoseek_val_00000000"}\n', encoding="utf-8")
    argv = ["convert", "infoseek", "--questions", str(f.questions), "--withkb", str(f.withkb)]
    argv += ["--kb", str(f.wiki6m), "--images", str(f.images), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "withkb.jsonl, line 1: missing required field 'entity_id'" in capsys.readouterr().err
    assert not (tmp_path / "o" / "queries.jsonl").exists()


@pytest.mark.parametrize("kind", ["echosight", "omgm"])
def test_import_published_pools(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    f = make_evqa(tmp_path / "raw")
    out = tmp_path / "evqa"
    argv = ["convert", "evqa", "--csv", str(f.csv), "--kb", str(f.kb), "--images", str(f.images)]
    assert main([*argv, "--id-map", str(f.id_map), "--out", str(out)]) == 0
    entries = {
        "E-VQA_0": [(BIGBEN, 0.9), (EIFFEL, 0.8), (BIGBEN, 0.7)],  # repeated URL keeps place
        "E-VQA_2": [(OAK, 0.5), (MONARCH, 0.4)],
        "E-VQA_9": [(OAK, 0.1)],  # not a query of this split
    }
    published = tmp_path / "result.json"
    published.write_text(
        echosight_pools(entries) if kind == "echosight" else omgm_pools(entries), "utf-8"
    )
    assert main(["convert", "pools", "--from", str(published), "--data", str(out)]) == 0
    text = capsys.readouterr().out
    assert "wrote 2 pools" in text and "unknown queries 1" in text
    assert "queries without a pool 2" in text
    ds = load_jsonl_dataset(out)
    assert ds.pools["E-VQA_0"] == ((BIGBEN, 0.9), (EIFFEL, 0.8))
    assert ds.pools["E-VQA_2"] == ((OAK, 0.5), (MONARCH, 0.4))


def test_import_reranked_and_malformed_pools(tmp_path: Path) -> None:
    published = tmp_path / "result.json"
    published.write_text(
        echosight_pools({"q1": [(EIFFEL, 0.9), (OAK, 0.8)]}, reranked=True), "utf-8"
    )
    pools, _ = import_pools(published, which="reranked")
    assert pools == {"q1": ((OAK, 2.0), (EIFFEL, 1.0))}  # order kept, rank scores
    with pytest.raises(DatasetFormatError, match=r"'q1': pool names .* not in the KB"):
        import_pools(published, kb_ids={EIFFEL})
    bad = json.loads(published.read_text("utf-8"))
    bad["q1"]["retrieval_similarities"] = [0.9]
    bad["q2"] = {"retrieved_entries": [OAK], "retrieval_similarities": [0.3]}
    published.write_text(json.dumps(bad), "utf-8")
    with pytest.raises(DatasetFormatError, match="as long as the pool"):
        import_pools(published)
    pools, summary = import_pools(published, lenient=True, query_ids={"q1", "q2", "q3"})
    assert pools == {"q2": ((OAK, 0.3),)} and summary.skipped == 1
    assert summary.missing_count == 2

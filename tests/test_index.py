"""CandidateIndex: build, add, exact and FAISS search, save / load, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from region_rerank.cache import EmbeddingCache
from region_rerank.errors import ConfigError, ModelLoadError
from region_rerank.index import CandidateIndex, exact_topk, faiss_available
from region_rerank.testing import COLOR_WORDS, FakeScorer
from region_rerank.types import Candidate

COLOURS = ["red", "green", "blue", "yellow", "cyan", "magenta", "orange"]


def _rgb(name: str) -> tuple[int, int, int]:
    """The pixel colour the fake scorer's histogram bins as ``name`` (levels 0, 1, 2)."""
    r, g, b = COLOR_WORDS[name]
    return (min(255, r * 128), min(255, g * 128), min(255, b * 128))


def _kb() -> list[Candidate]:
    return [
        Candidate(f"kb-{c}", f"a {c} thing", images=[Image.new("RGB", (12, 12), _rgb(c))])
        for c in COLOURS
    ]


def _query(colour: str) -> torch.Tensor:
    return FakeScorer().embed_images([Image.new("RGB", (20, 20), _rgb(colour))])


def test_build_and_search_find_the_matching_entry() -> None:
    index = CandidateIndex.build(_kb(), FakeScorer(), batch_size=3, progress=False)
    assert len(index) == len(COLOURS) and index.ids[0] == "kb-red"
    hits = index.search(torch.cat([_query("blue"), _query("orange")]), k=3)
    assert [h[0][0] for h in hits] == ["kb-blue", "kb-orange"]
    assert all(len(h) == 3 for h in hits)
    assert hits[0][0][1] >= hits[0][1][1] >= hits[0][2][1]


def test_search_equals_brute_force_over_the_whole_matrix() -> None:
    gen = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(50, 8, generator=gen), dim=1)
    queries = torch.nn.functional.normalize(torch.randn(6, 8, generator=gen), dim=1)
    index = CandidateIndex([f"e{i}" for i in range(50)], emb)
    for chunk in (1, 7, 4096):
        hits = index.search(queries, k=5, chunk_size=chunk)
        expected = torch.topk(queries @ emb.T, 5, dim=1)
        for row, h in enumerate(hits):
            assert [i for i, _ in h] == [f"e{j}" for j in expected.indices[row].tolist()]
            assert [s for _, s in h] == pytest.approx(expected.values[row].tolist(), abs=1e-6)


def test_ties_go_to_the_entry_added_first() -> None:
    emb = torch.ones(4, 2) / 2**0.5
    index = CandidateIndex(["d", "c"], emb[:2])
    index.add(["b", "a"], emb[2:])
    assert [i for i, _ in index.search(emb[:1], k=4)[0]] == ["d", "c", "b", "a"]
    scores, i = exact_topk(emb[:1], [(0, emb[:3]), (3, emb[3:])], k=2)
    assert scores.shape == (1, 2)
    assert i.tolist() == [[0, 1]]


def _random_index(n: int, n_queries: int, seed: int) -> tuple[CandidateIndex, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(n, 16, generator=gen), dim=1)
    queries = torch.nn.functional.normalize(torch.randn(n_queries, 16, generator=gen), dim=1)
    return CandidateIndex([f"e{i}" for i in range(n)], emb), queries


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu (the index extra) is not installed")
def test_faiss_search_matches_the_exact_search() -> None:
    index, queries = _random_index(40, 5, seed=1)
    exact = index.search(queries, k=6)
    fast = index.search(queries, k=6, use_faiss=True)
    for a, b in zip(exact, fast):
        assert [i for i, _ in a] == [i for i, _ in b]
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-5)


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu (the index extra) is not installed")
def test_persistent_faiss_indexes_hnsw_and_ivf() -> None:
    import pickle

    index, queries = _random_index(300, 8, seed=2)
    emb = index.embeddings()
    exact = [[i for i, _ in row] for row in index.search(queries, k=5)]
    # a graph searched with a beam as wide as the index visits everything: exact here
    hnsw = index.search(
        queries, k=5, use_faiss=True, faiss_index="HNSW8,Flat", faiss_params={"efSearch": 300}
    )
    assert [[i for i, _ in row] for row in hnsw] == exact
    built = index._faiss["HNSW8,Flat"]
    index.search(queries, k=5, use_faiss=True, faiss_index="HNSW8,Flat")
    assert index._faiss["HNSW8,Flat"] is built  # kept between searches
    # an IVF index is trained first; probing every list is exact
    ivf = index.search(
        queries, k=5, use_faiss=True, faiss_index="IVF4,Flat", faiss_params={"nprobe": 4}
    )
    assert [[i for i, _ in row] for row in ivf] == exact
    # adding entries drops the built indexes: the new entry is found
    index.add(["new"], queries[:1])
    assert index._faiss == {}
    assert (
        index.search(queries[:1], k=1, use_faiss=True, faiss_index="HNSW8,Flat")[0][0][0] == "new"
    )
    again = pickle.loads(pickle.dumps(index))  # FAISS objects are not pickled; rebuilt on use
    assert (
        again.search(queries[:1], k=1, use_faiss=True, faiss_index="HNSW8,Flat")[0][0][0] == "new"
    )
    with pytest.raises(ConfigError, match="not a FAISS index_factory string"):
        index.search(queries, k=1, use_faiss=True, faiss_index="NoSuchIndex")
    with pytest.raises(ConfigError, match="no search parameter 'nprobe'"):
        index.search(
            queries, k=1, use_faiss=True, faiss_index="HNSW8,Flat", faiss_params={"nprobe": 2}
        )
    with pytest.raises(ConfigError, match="need FAISS search"):
        index.search(queries, k=1, faiss_index="HNSW8,Flat")
    with pytest.raises(ConfigError, match="cannot train"):
        CandidateIndex(["a", "b"], emb[:2]).search(
            queries, k=1, use_faiss=True, faiss_index="IVF64,Flat"
        )


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    scorer = FakeScorer()
    index = CandidateIndex.build(_kb(), scorer, progress=False)
    index.save(tmp_path / "idx")
    again = CandidateIndex.load(tmp_path / "idx", scorer=scorer)
    assert again.ids == index.ids and again.scorer_name == "fake"
    assert torch.equal(again.embeddings(), index.embeddings())
    assert again.search(_query("green"), k=2) == index.search(_query("green"), k=2)


def test_an_index_refuses_another_scorer(tmp_path: Path) -> None:
    class OtherScorer(FakeScorer):
        name = "other"

    CandidateIndex.build(_kb(), FakeScorer(), progress=False).save(tmp_path / "idx")
    with pytest.raises(ConfigError, match="built with scorer 'fake'"):
        CandidateIndex.load(tmp_path / "idx", scorer=OtherScorer())
    index = CandidateIndex.load(tmp_path / "idx")
    with pytest.raises(ConfigError, match="built with scorer"):
        index.search(_query("red"), k=1, scorer=OtherScorer())
    with pytest.raises(ConfigError, match="size 3"):
        index.search(torch.zeros(1, 3), k=1)


def test_bad_input_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="duplicate id 'a'"):
        CandidateIndex(["a", "a"], torch.zeros(2, 4))
    index = CandidateIndex(["a"], torch.zeros(1, 4))
    with pytest.raises(ConfigError, match="duplicate id 'a'"):
        index.add(["a"], torch.zeros(1, 4))
    with pytest.raises(ConfigError, match="2 ids"):
        index.add(["b", "c"], torch.zeros(3, 4))
    with pytest.raises(ConfigError, match="size 5"):
        index.add(["b"], torch.zeros(1, 5))
    assert index.ids == ("a",)  # the refused additions left nothing behind
    with pytest.raises(ConfigError, match="k"):
        index.search(torch.zeros(1, 4), k=0)
    with pytest.raises(ModelLoadError, match="cannot load an index"):
        CandidateIndex.load(tmp_path / "missing")


def test_entries_without_content_are_reported_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    kb = [*_kb(), Candidate("empty", "   ")]
    index = CandidateIndex.build(kb, FakeScorer(), progress=False)
    assert "empty" not in index.ids and index.skipped == ("empty",)
    assert "not indexed" in caplog.text


def test_build_through_a_cache_embeds_like_without_one() -> None:
    cache = EmbeddingCache()
    with_cache = CandidateIndex.build(_kb(), FakeScorer(), cache=cache, progress=False)
    plain = CandidateIndex.build(_kb(), FakeScorer(), progress=False)
    assert torch.allclose(with_cache.embeddings(), plain.embeddings(), atol=1e-6)
    assert len(cache) == len(COLOURS)

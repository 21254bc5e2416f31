"""Issue 13 items 6 and 7: one bad candidate costs only that candidate, and bad input raises
typed errors (every one derived from ``RegionRerankError``); nothing is clipped silently."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from region_rerank import ClipScorer, CroppedReranker, RerankerConfig
from region_rerank.errors import ImageLoadError, InputTypeError, RegionRerankError
from region_rerank.images import load_image
from region_rerank.model_options import ModelOptions
from region_rerank.testing import FakeCropper, FakeScorer
from region_rerank.types import Candidate, Query
from tests.tiny.clip_models import build_tiny_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> ClipScorer:
    return ClipScorer(
        str(build_tiny_clip(tmp_path_factory.mktemp("clip") / "m")),
        model_options=ModelOptions(device="cpu"),
    )


def _query() -> Query:
    img = Image.new("RGB", (48, 32), (20, 20, 200))
    img.paste((220, 20, 20), (0, 0, 16, 32))
    return Query(img, "what is the red thing?", id="q")


def _good() -> list[Candidate]:
    red = Image.new("RGB", (24, 24), (220, 20, 20))
    return [
        Candidate("a", "a red bridge", images=red),
        Candidate("b", "a blue lake"),
        Candidate("c", "a green tree"),
    ]


def _scores(result) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {s.candidate.id: s.score for s in result.ranking}


def test_a_lone_surrogate_in_one_text_costs_only_that_candidate(clip: ClipScorer) -> None:
    clean = CroppedReranker(FakeCropper(None), clip).rerank(_query(), _good())
    bad = Candidate("s", "broken \ud800 text")
    rr = CroppedReranker(FakeCropper(None), clip)  # fresh cache: the batch really fails
    res = rr.rerank(_query(), [*_good()[:2], bad, _good()[2]])
    assert not res.fallback
    assert res.ids[-1] == "s" and _scores(res)["s"] == float("-inf")
    got = _scores(res)
    for cid, score in _scores(clean).items():
        assert got[cid] == pytest.approx(score, abs=1e-5)
    assert sorted(res.ids) == ["a", "b", "c", "s"]


def test_an_object_dtype_image_costs_only_that_candidates_image(clip: ClipScorer) -> None:
    weird = np.empty((8, 8, 3), dtype=object)
    weird[:] = "x"
    bad = Candidate("w", "a red bridge too", images=weird)
    res = CroppedReranker(FakeCropper(None), clip).rerank(_query(), [*_good(), bad])
    assert not res.fallback
    assert sorted(res.ids) == ["a", "b", "c", "w"]
    # Scored from its text alone: the same score as a text-only twin.
    twin = CroppedReranker(FakeCropper(None), clip).rerank(
        _query(), [Candidate("w", "a red bridge too")]
    )
    assert _scores(res)["w"] == pytest.approx(_scores(twin)["w"], abs=1e-5)


ALL_DTYPES = [
    np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64,
    np.int64, np.float16, np.float32, np.float64, np.longdouble, np.complex64, np.complex128,
    np.object_, np.str_, np.bytes_, np.datetime64, np.timedelta64,
]  # fmt: skip


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_numpy_dtype_decodes_or_raises_image_load_error(dtype: type) -> None:
    arr = np.zeros((4, 5, 3), dtype=dtype)
    if np.dtype(dtype).kind in "biuf":
        img = load_image(arr)
        assert img.size == (5, 4) and img.mode == "RGB"
    else:
        with pytest.raises(ImageLoadError, match="dtype"):
            load_image(arr)


@pytest.mark.parametrize(
    "values",
    [np.array([-0.5, 0.5]), np.array([0.0, 300.0]), np.array([-3, 5]), np.array([0, 70_000])],
    ids=["negative-float", "float-over-255", "negative-int", "int-over-65535"],
)
def test_out_of_range_pixels_are_refused_not_clipped(values: np.ndarray) -> None:
    arr = np.resize(values, (4, 4)).astype(values.dtype)
    with pytest.raises(ImageLoadError, match="must lie in"):
        load_image(arr)
    with pytest.raises(ImageLoadError, match="must lie in"):
        load_image(torch.from_numpy(arr.copy()))


def test_in_range_values_keep_their_meaning() -> None:
    assert load_image(np.full((2, 2), 1.0)).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(np.full((2, 2), 128.0)).getpixel((0, 0)) == (128, 128, 128)
    assert load_image(np.full((2, 2), 65535, dtype=np.uint16)).getpixel((0, 0)) == (255,) * 3


@pytest.mark.parametrize("question", [None, 3, b"bytes"])
def test_a_question_that_is_not_text_is_a_typed_error(question: object) -> None:
    with pytest.raises(InputTypeError, match="question"):
        Query(Image.new("RGB", (4, 4)), question)  # type: ignore[arg-type]


def test_wrong_entries_are_typed_errors() -> None:
    rr = CroppedReranker(FakeCropper(None), FakeScorer())
    with pytest.raises(InputTypeError, match="Candidate"):
        rr.rerank(_query(), ["not a candidate"])  # type: ignore[list-item]
    with pytest.raises(InputTypeError, match="Query"):
        rr.rerank_batch(["not a query"], [[]])  # type: ignore[list-item]
    assert issubclass(InputTypeError, RegionRerankError) and issubclass(InputTypeError, TypeError)


def test_generators_and_iterators_are_accepted_and_nothing_is_dropped() -> None:
    rr = CroppedReranker(FakeCropper(None), FakeScorer(), config=RerankerConfig(top_n=None))
    gen = (c for c in _good())
    assert sorted(rr.rerank(_query(), gen).ids) == ["a", "b", "c"]
    results = rr.rerank_batch(iter([_query(), _query()]), iter([iter(_good()), _good()]))
    assert [sorted(r.ids) for r in results] == [["a", "b", "c"]] * 2


def test_public_core_objects_pickle_and_copy_faithfully(tmp_path: Path) -> None:
    rr = CroppedReranker("center", "fake", config=RerankerConfig(top_n=2, fusion="max"))
    expected = rr.rerank(_query(), _good())
    for clone in (pickle.loads(pickle.dumps(rr)), copy.deepcopy(rr), copy.copy(rr)):
        assert clone.config == rr.config
        got = clone.rerank(_query(), _good())
        assert got.ids == expected.ids and _scores(got) == _scores(expected)
    for obj in (_query(), _good()[0], expected, expected.decision):
        again = pickle.loads(pickle.dumps(obj))
        assert type(again) is type(obj)

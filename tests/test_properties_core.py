"""Property-based test of the whole ``CroppedReranker`` (issue 13): over random pools, inputs
and fault injections, the invariants of the Guarantees hold.

* fallback mode never raises on bad candidates or failing components; every candidate comes
  back exactly once (a permutation of the pool, cut by ``top_n``), unscorable ones last;
* raise mode raises only typed errors (``RegionRerankError``) or the injected fault itself;
* the caller's queries and candidates are never modified.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from region_rerank import CroppedReranker, RerankerConfig
from region_rerank.errors import RegionRerankError
from region_rerank.testing import FakeCropper, FakeScorer
from region_rerank.types import Candidate, Query


class InjectedFault(RuntimeError):
    """The fault the test injects into a component."""


class FlakyScorer(FakeScorer):
    """Fails on texts holding the word ``poison`` (a per-candidate fault) and, optionally,
    on every call after ``fail_after`` (a component fault)."""

    def embed_texts(self, texts: Any) -> Any:
        if any("poison" in t for t in texts):
            raise InjectedFault("poisoned text")
        return super().embed_texts(texts)

    def _tick(self) -> None:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise InjectedFault("scorer down")


COLOURS = [(220, 30, 30), (30, 30, 220), (30, 200, 30), (240, 240, 240)]

images = st.one_of(
    st.builds(lambda c, w, h: Image.new("RGB", (w, h), c), st.sampled_from(COLOURS),
              st.integers(1, 40), st.integers(1, 40)),
    st.builds(lambda w, h: np.zeros((h, w, 3), dtype=np.uint8),
              st.integers(1, 20), st.integers(1, 20)),
    st.just(b"not an image"),
    st.just(np.array([["x"]], dtype=object)),
    st.just(np.full((4, 4), -3.0)),
    st.just("/nonexistent/file.png"),
)  # fmt: skip
texts = st.one_of(
    st.none(),
    st.just(""),
    st.sampled_from(["a red bridge", "a blue lake", "green", "poison pill", "bad \ud800 text"]),
    st.text(max_size=30),
)
candidates = st.builds(
    lambda i, t, imgs, s, meta: Candidate(
        f"c{i}", t, images=imgs, retrieval_score=s, metadata={"k": list(meta)}
    ),
    st.integers(0, 5),  # ids may repeat: duplicates are kept
    texts,
    st.lists(images, max_size=2),
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    st.lists(st.integers(), max_size=2),
)
query_images = st.one_of(
    st.builds(lambda c, w, h: Image.new("RGB", (w, h), c), st.sampled_from(COLOURS),
              st.integers(1, 300), st.integers(1, 300)),
    st.just(b"broken"),
)  # fmt: skip
boxes = st.one_of(
    st.none(),
    st.tuples(*[st.one_of(st.floats(-0.5, 1.5), st.just(float("nan")))] * 4),
)


def _snapshot(obj: Any) -> Any:
    if isinstance(obj, Candidate):
        return (obj.id, obj.text, len(obj.images), dict(obj.metadata), obj.retrieval_score)
    return (obj.question, obj.id, id(obj.image))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pools=st.lists(st.lists(candidates, max_size=6), min_size=1, max_size=3),
    qimages=st.lists(query_images, min_size=3, max_size=3),
    box=boxes,
    top_n=st.one_of(st.none(), st.integers(0, 7)),
    fail_after=st.one_of(st.none(), st.integers(0, 4)),
    cropper_fails=st.booleans(),
    fusion=st.sampled_from(["crop", "max", "mix"]),
)
def test_reranker_invariants(
    pools: list[list[Candidate]],
    qimages: list[Any],
    box: Any,
    top_n: int | None,
    fail_after: int | None,
    cropper_fails: bool,
    fusion: str,
) -> None:
    queries = [Query(img, f"what is this {i}?", id=f"q{i}") for i, img in enumerate(qimages)]
    queries = queries[: len(pools)]
    before = [[_snapshot(c) for c in p] for p in pools], [_snapshot(q) for q in queries]
    pools_copy = [list(p) for p in pools]
    cropper = FakeCropper(box, raises=InjectedFault("cropper down") if cropper_fails else None)
    for on_error in ("fallback", "raise"):
        rr = CroppedReranker(
            cropper,
            FlakyScorer(fail_after=fail_after),
            config=RerankerConfig(on_error=on_error, fusion=fusion),
        )
        try:
            results = rr.rerank_batch(queries, pools, top_n)
        except (RegionRerankError, InjectedFault) as exc:
            assert on_error == "raise", f"fallback mode raised {exc!r}"
            continue
        assert len(results) == len(queries)
        for res, pool in zip(results, pools):
            ids = [c.id for c in pool]
            got = [s.candidate for s in res.ranking]
            # A permutation of the pool (by identity), cut by top_n: nothing lost or added.
            assert all(any(g is c for c in pool) for g in got)
            assert len({id(g) for g in got}) == len(got)
            expected_len = len(ids) if top_n is None else min(top_n, len(ids))
            assert len(got) == expected_len
            scores = [s.score for s in res.ranking]
            finite = [np.isfinite(s) for s in scores]
            assert finite == sorted(finite, reverse=True)  # unscorable (-inf) last
    # The caller's objects are unchanged.
    assert ([[_snapshot(c) for c in p] for p in pools], [_snapshot(q) for q in queries]) == before
    assert all(a is b for p, q in zip(pools, pools_copy) for a, b in zip(p, q))

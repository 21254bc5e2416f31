"""CroppedReranker: crop decision + scoring + candidate cache + fusion, batched.

Example:
    >>> from region_rerank import CroppedReranker, Query, Candidate
    >>> from region_rerank.testing import FakeCropper, FakeScorer
    >>> from PIL import Image
    >>> rr = CroppedReranker(cropper=FakeCropper((0.0, 0.0, 0.5, 1.0)), scorer=FakeScorer())
    >>> img = Image.new("RGB", (64, 32), "blue"); img.paste((255, 0, 0), (0, 0, 32, 32))
    >>> pool = [Candidate("b", "blue"), Candidate("r", "red")]
    >>> rr.rerank(Query(img, "what is this?"), pool).ids
    ['r', 'b']
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_choice, check_int, check_range, check_rerank_inputs
from region_rerank.boxes import clamp_box, ensure_min_size, pad_box
from region_rerank.budget import call_with_timeout, limit_question
from region_rerank.cache import EmbeddingCache
from region_rerank.croppers.base import QueryCropper
from region_rerank.errors import ConfigError
from region_rerank.fusion import FUSION_MODES, fuse_scores, input_order, rank_candidates
from region_rerank.images import ImageLoadOptions, load_image
from region_rerank.model_options import ModelOptions, model_options_or_default
from region_rerank.scorers.base import PairScorer, Scorer
from region_rerank.types import Candidate, CropAction, CropDecision, Query, RerankResult
from region_rerank.views import score_by_embeddings, score_by_pairs

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["RerankerConfig", "CroppedReranker"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerankerConfig:
    """Settings of :class:`CroppedReranker`.

    Attributes:
        fusion: ``"crop"`` (paper), ``"max"`` (max of full and crop), ``"blend"`` (their
            weighted mean) or ``"mix"`` (with the retrieval score); see
            :mod:`region_rerank.fusion`.
        mix_weight: Weight of the retrieval score in ``"mix"``, in [0, 1].
        full_weight: Weight of the full-image similarity in ``"blend"``, in [0, 1].
        close_margin: ``"blend"`` adapts per query: when the view's best two candidates
            score less than this apart, the query uses ``close_full_weight`` (0: never).
        close_full_weight: The full-image weight of those queries, in [0, 1].
        top_n: Default number of candidates returned (``None`` = all).
        batch_size: Images or texts per forward pass.
        cache_bytes: Byte bound of the candidate-embedding cache (0 disables it).
        tensor_crop: Crop and resize on the scorer's device when it supports it.
        on_error: ``"fallback"`` (a failing query degrades alone: full image when the
            cropper fails or overruns ``crop_timeout``, original order when decoding or
            scoring fails, warning logged; a candidate whose image cannot be decoded is
            scored without it, or ranked last when nothing is left) or ``"raise"`` (errors
            propagate unchanged).
        crop_margin: Grow each crop by this fraction of its size per side.
        min_crop_size: Grow crops smaller than this many pixels per side.
        image_options: Pixel budget and URL policy for every image decoded.
        crop_timeout: Seconds the cropper may take per query (a batch of ``n`` queries
            gets ``n`` times this); ``None`` = unbounded. An overrun raises
            :class:`~region_rerank.errors.CropperTimeoutError` (FULL in fallback mode).
        max_question_chars: Questions longer than this are cut to this many characters
            (warning logged) before the cropper or a cross-encoder sees them.
    """

    fusion: str = "crop"
    mix_weight: float = 0.5
    full_weight: float = 0.5
    close_margin: float = 0.0
    close_full_weight: float = 1.0
    top_n: int | None = None
    batch_size: int = 32
    cache_bytes: int = 256 * 1024 * 1024
    tensor_crop: bool = True
    on_error: str = "fallback"
    crop_margin: float = 0.0
    min_crop_size: int = 0
    image_options: ImageLoadOptions = field(default_factory=ImageLoadOptions)
    crop_timeout: float | None = None
    max_question_chars: int = 4096

    def __post_init__(self) -> None:
        check_choice("fusion", self.fusion, FUSION_MODES)
        check_choice("on_error", self.on_error, ("fallback", "raise"))
        check_range("mix_weight", self.mix_weight, 0.0, 1.0)
        check_range("full_weight", self.full_weight, 0.0, 1.0)
        check_range("close_margin", self.close_margin, 0.0)
        check_range("close_full_weight", self.close_full_weight, 0.0, 1.0)
        if self.top_n is not None:
            check_int("top_n", self.top_n, 0)
        check_int("batch_size", self.batch_size, 1)
        check_int("cache_bytes", self.cache_bytes, 0)
        check_range("crop_margin", self.crop_margin, 0.0)
        check_range("min_crop_size", self.min_crop_size, 0)
        if self.crop_timeout is not None:
            check_range("crop_timeout", self.crop_timeout, 0, low_inclusive=False)
        check_int("max_question_chars", self.max_question_chars, 1)


@dataclass
class _Prepared:
    """Queries with their decoded images and final decisions (the part of a re-rank that
    needs no candidates; :mod:`region_rerank.retrieval` searches with it)."""

    queries: list[Query]
    images: list[Image.Image]
    decisions: list[CropDecision]
    errors: list[str | None]
    timings: dict[str, float]


def _load(component: Any) -> None:
    """Load a component's model now if it loads lazily (it has a ``load()`` method); a
    no-op once loaded."""
    load = getattr(component, "load", None)
    if callable(load):
        load()


def _now() -> float:
    return time.perf_counter()


class CroppedReranker:
    """Re-rank candidates against the query view chosen by a cropper.

    Args:
        cropper: A :class:`~region_rerank.croppers.base.QueryCropper`, or a spec string for
            :func:`region_rerank.factory.build_cropper` (``"full"``, ``"grounding:MODEL"``,
            ``"vlm:MODEL"``, ``"text_match"`` which uses this reranker's scorer).
            Default: ``"grounding"`` (OWLv2), built on first use.
        scorer: A bi-encoder :class:`~region_rerank.scorers.base.Scorer`, a cross-encoder
            :class:`~region_rerank.scorers.base.PairScorer`, or a spec string for
            :func:`region_rerank.factory.build_scorer`. Default: ``"clip"``, built on
            first use.
        config: :class:`RerankerConfig`.
        cache: An :class:`~region_rerank.cache.EmbeddingCache` to share between rerankers
            (default: a private one bounded by ``config.cache_bytes``).
        model_options: How the cropper / scorer built from specs load their models
            (:class:`~region_rerank.model_options.ModelOptions`); components passed as
            objects keep their own. A cropper built from a spec also decodes with
            ``config.image_options``.

    The caller's queries and candidates are never modified; results reference them.
    One reranker may be used from several threads at once: components built from specs
    are built once, and the cache is locked (the cropper and scorer must tolerate
    concurrent calls, as the library's own do).
    """

    def __init__(
        self,
        cropper: QueryCropper | str | None = None,
        scorer: Scorer | PairScorer | str | None = None,
        *,
        config: RerankerConfig | None = None,
        cache: EmbeddingCache | None = None,
        model_options: ModelOptions | None = None,
    ) -> None:
        self.config = config or RerankerConfig()
        self._cropper_spec = cropper if cropper is not None else "grounding"
        self._scorer_spec = scorer if scorer is not None else "clip"
        self._cropper: QueryCropper | None = (
            None if isinstance(cropper, (str, type(None))) else cropper
        )
        self._scorer: Any = None if isinstance(scorer, (str, type(None))) else scorer
        self.cache = cache if cache is not None else EmbeddingCache(self.config.cache_bytes)
        self.model_options = model_options_or_default(model_options)
        self._build_lock = threading.RLock()

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        """Pickle the configuration and components, not the lock or the cache.

        Components given as spec strings are pickled as their specs (rebuilt on first use,
        as by the original); component objects are pickled as they are, and one that cannot
        be pickled raises :class:`~region_rerank.errors.ConfigError` naming it. The
        unpickled reranker starts with an empty cache of the same size."""
        state = self.__dict__.copy()
        state.pop("_build_lock", None)
        state["cache"] = self.cache.max_bytes
        for name, spec in (("_cropper", self._cropper_spec), ("_scorer", self._scorer_spec)):
            if isinstance(spec, str):
                state[name] = None  # rebuilt from the spec
            else:
                try:
                    pickle.dumps(state[name])
                except Exception as exc:
                    raise ConfigError(
                        f"CroppedReranker cannot be pickled: its {name[1:]} "
                        f"{type(state[name]).__name__} cannot be pickled ({exc}); build it "
                        "from a spec string, or make it picklable"
                    ) from exc
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["cache"] = EmbeddingCache(int(state["cache"]))
        self.__dict__.update(state)
        self._build_lock = threading.RLock()

    # ------------------------------------------------------------------ components
    @property
    def cropper(self) -> QueryCropper:
        """The cropper (built from its spec on first access, once across threads)."""
        if self._cropper is None:
            with self._build_lock:
                if self._cropper is None:
                    from region_rerank.factory import build_cropper, needs_scorer

                    spec = str(self._cropper_spec)
                    scorer = self.scorer if needs_scorer(spec) else None
                    self._cropper = build_cropper(
                        spec,
                        model_options=self.model_options,
                        image_options=self.config.image_options,
                        scorer=scorer,
                    )
        return self._cropper

    @property
    def scorer(self) -> Any:
        """The scorer (built from its spec on first access, once across threads)."""
        if self._scorer is None:
            with self._build_lock:
                if self._scorer is None:
                    from region_rerank.factory import build_scorer

                    self._scorer = build_scorer(
                        str(self._scorer_spec), model_options=self.model_options
                    )
        return self._scorer

    # ------------------------------------------------------------------ public API
    def rerank(
        self,
        query: Query,
        candidates: Sequence[Candidate],
        top_n: int | None = None,
        *,
        decision: CropDecision | None = None,
    ) -> RerankResult:
        """Re-rank ``candidates`` for one ``query``.

        Args:
            query: Image + question.
            candidates: The retrieved pool. Nothing is dropped except by ``top_n``;
                candidates with neither text, image nor embedding score ``-inf`` (last).
            top_n: Keep the best ``top_n`` (default ``config.top_n``; ``None`` = all).
            decision: Use this crop decision instead of asking the cropper (e.g. an
                oracle box in evaluation).

        Returns:
            A :class:`RerankResult`; ``result.fallback`` is True if an error was caught.
        """
        return self.rerank_batch(
            [query], [candidates], top_n, decisions=None if decision is None else [decision]
        )[0]

    def rerank_batch(
        self,
        queries: Sequence[Query],
        candidates: Sequence[Sequence[Candidate]],
        top_n: int | None = None,
        *,
        decisions: Sequence[CropDecision] | None = None,
    ) -> list[RerankResult]:
        """Re-rank several queries, batching crop decisions, view and candidate embeddings.

        ``candidates[i]`` is the pool of ``queries[i]``. In fallback mode a failure in the
        batch is retried query by query so that only the failing query degrades.

        Raises:
            ConfigError, TypeError: Invalid arguments, or a cropper / scorer spec that
                cannot be built (also in fallback mode: that is not a bad query).
            ModelLoadError: A component's model cannot be loaded (also in fallback mode).
            ImportError: A component needs an optional package that is not installed.
        """
        queries, pools = check_rerank_inputs(queries, candidates, decisions)
        top = self.config.top_n if top_n is None else top_n
        if top is not None:
            check_int("top_n", top, 0)
        if not queries:
            return []
        # Build and load missing components here, outside the fallback: a wrong spec, a model
        # that cannot load or a missing package would otherwise be retried (and swallowed)
        # once per query.
        _load(self.scorer)
        if decisions is None:
            _load(self.cropper)
        if self.config.on_error == "raise":
            return self._run(queries, pools, top, decisions)
        try:
            return self._run(queries, pools, top, decisions)
        except Exception as exc:
            if len(queries) == 1:
                return [self._degraded(queries[0], pools[0], top, exc)]
            logger.warning(
                "batch of %d queries failed (%s); retrying one by one", len(queries), exc
            )
        results = []
        for i, (query, pool) in enumerate(zip(queries, pools)):
            one = None if decisions is None else [decisions[i]]
            try:
                results.extend(self._run([query], [pool], top, one))
            except Exception as exc:
                results.append(self._degraded(query, pool, top, exc))
        return results

    # ------------------------------------------------------------------ internals
    def _degraded(
        self, query: Query, pool: list[Candidate], top_n: int | None, exc: BaseException
    ) -> RerankResult:
        error = f"{type(exc).__name__}: {exc}"
        logger.warning("query %r degraded to the original order: %s", query.id, error)
        decision = CropDecision.full(source="fallback", reason=error)
        ranking = input_order(pool, top_n=top_n)
        return RerankResult(query.id, ranking, decision, {}, fallback=True, error=error)

    def _decide(
        self, queries: list[Query], images: list[Image.Image]
    ) -> list[tuple[CropDecision, str | None]]:
        """Ask the cropper; in fallback mode a failing query gets FULL (error noted)."""
        decoded = [replace(q, image=img) for q, img in zip(queries, images)]
        budget = self.config.crop_timeout
        try:
            batch_budget = None if budget is None else budget * len(decoded)
            what = f"the cropper on a batch of {len(decoded)} queries"
            decided = call_with_timeout(
                self.cropper.decide_batch, decoded, timeout=batch_budget, what=what
            )
            return [(d, None) for d in decided]
        except Exception as exc:
            if self.config.on_error == "raise":
                raise
            first_error = exc
        out: list[tuple[CropDecision, str | None]] = []
        for query, img in zip(decoded, images):
            try:
                what = f"the cropper on query {query.id!r}"
                out.append(
                    (call_with_timeout(self.cropper.decide, query, timeout=budget, what=what), None)
                )
            except Exception as exc:
                msg = f"{type(exc).__name__}: {exc}"
                logger.warning(
                    "cropper failed on query %r, keeping the full image: %s", query.id, msg
                )
                out.append(
                    (CropDecision.full(image_size=img.size, source="fallback", reason=msg), msg)
                )
        if len(queries) > 1:
            logger.debug("cropper batch failed (%s); decided one by one", first_error)
        return out

    def _postprocess(
        self, query: Query, decision: CropDecision, size: tuple[int, int]
    ) -> CropDecision:
        """Clamp the box to the image (FULL when nothing is left), then pad and grow it."""
        if decision.box is None:
            return decision if decision.image_size else replace(decision, image_size=size)
        box = clamp_box(decision.box, size)
        if box is None:
            reason = f"box {decision.box.as_tuple()} lies outside the {size[0]}x{size[1]} image"
            logger.warning("query %r: %s; keeping the full image", query.id, reason)
            return replace(
                decision, action=CropAction.FULL, box=None, image_size=size, reason=reason
            )
        if self.config.crop_margin > 0:
            box = pad_box(box, size, self.config.crop_margin)
        if self.config.min_crop_size > 0:
            box = ensure_min_size(box, size, self.config.min_crop_size)
        return replace(decision, box=box, image_size=size)

    def _views(self, decision: CropDecision) -> list[Any]:
        if decision.box is None:
            return [None]
        return [None, decision.box] if self.config.fusion in ("max", "blend") else [decision.box]

    def _prepare(self, queries: list[Query], decisions: Sequence[CropDecision] | None) -> _Prepared:
        """Decode each query image once and settle its decision (the cropper's, or the one
        given), clamped and grown per the config."""
        timings: dict[str, float] = {"batch_queries": float(len(queries))}
        queries = [limit_question(q, self.config.max_question_chars) for q in queries]
        t = _now()
        opts = self.config.image_options
        images = [load_image(q.image, opts) for q in queries]
        timings["decode"] = _now() - t
        t = _now()
        if decisions is None:
            decided = self._decide(queries, images)
        else:
            decided = [(d, None) for d in decisions]
        final = [
            self._postprocess(q, d, img.size) for q, (d, _), img in zip(queries, decided, images)
        ]
        timings["crop"] = _now() - t
        errors = [err for _, err in decided]
        return _Prepared(queries, images, final, errors, timings)

    def _finish(
        self, prep: _Prepared, pools: list[list[Candidate]], top_n: int | None
    ) -> list[RerankResult]:
        """Score ``pools`` against the prepared views and rank them."""
        timings = prep.timings
        scorer = self.scorer
        if isinstance(scorer, PairScorer) and not hasattr(scorer, "embed_images"):
            per_query = score_by_pairs(
                scorer,
                prep.queries,
                prep.images,
                [self._views(d) for d in prep.decisions],
                pools,
                self.config,
                timings,
            )
        else:
            per_query = score_by_embeddings(
                scorer,
                prep.images,
                [self._views(d) for d in prep.decisions],
                pools,
                self.cache,
                self.config,
                timings,
            )
        results = []
        t = _now()
        for query, pool, decision, (view, full), err in zip(
            prep.queries, pools, prep.decisions, per_query, prep.errors
        ):
            fused = fuse_scores(
                view,
                mode=self.config.fusion,
                full_scores=full,
                retrieval_scores=[c.retrieval_score for c in pool],
                mix_weight=self.config.mix_weight,
                full_weight=self.config.full_weight,
                close_margin=self.config.close_margin,
                close_full_weight=self.config.close_full_weight,
            )
            ranking = rank_candidates(pool, fused, top_n=top_n, view_scores=view, full_scores=full)
            results.append((query, ranking, decision, err))
        timings["fuse"] = _now() - t
        timings["total"] = sum(v for k, v in timings.items() if k != "batch_queries")
        return [
            RerankResult(q.id, r, d, timings, fallback=err is not None, error=err)
            for q, r, d, err in results
        ]

    def _run(
        self,
        queries: list[Query],
        pools: list[list[Candidate]],
        top_n: int | None,
        decisions: Sequence[CropDecision] | None,
    ) -> list[RerankResult]:
        return self._finish(self._prepare(queries, decisions), pools, top_n)

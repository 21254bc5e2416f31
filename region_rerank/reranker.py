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
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_choice, check_range
from region_rerank.boxes import ensure_min_size, pad_box
from region_rerank.cache import EmbeddingCache, candidate_key
from region_rerank.croppers.base import QueryCropper
from region_rerank.errors import CandidateError, ConfigError
from region_rerank.fusion import FUSION_MODES, fuse_scores, rank_candidates
from region_rerank.images import ImageLoadOptions, crop_pil, load_image
from region_rerank.scorers.base import PairScorer, Scorer, l2_normalize
from region_rerank.types import Candidate, CropDecision, Query, RerankResult
from region_rerank.views import embed_views

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["RerankerConfig", "CroppedReranker"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerankerConfig:
    """Settings of :class:`CroppedReranker`.

    Attributes:
        fusion: ``"crop"`` (paper), ``"max"`` (max of full and crop) or ``"mix"``
            (with the retrieval score); see :mod:`region_rerank.fusion`.
        mix_weight: Weight of the retrieval score in ``"mix"``, in [0, 1].
        top_n: Default number of candidates returned (``None`` = all).
        batch_size: Images or texts per forward pass.
        cache_bytes: Byte bound of the candidate-embedding cache (0 disables it).
        tensor_crop: Crop and resize on the scorer's device when it supports it.
        on_error: ``"fallback"`` (a failing query degrades alone: full image when the
            cropper fails, original order when decoding or scoring fails, warning logged)
            or ``"raise"`` (errors propagate unchanged).
        crop_margin: Grow each crop by this fraction of its size per side.
        min_crop_size: Grow crops smaller than this many pixels per side.
        image_options: Pixel budget and URL policy for every image decoded.
    """

    fusion: str = "crop"
    mix_weight: float = 0.5
    top_n: int | None = None
    batch_size: int = 32
    cache_bytes: int = 256 * 1024 * 1024
    tensor_crop: bool = True
    on_error: str = "fallback"
    crop_margin: float = 0.0
    min_crop_size: int = 0
    image_options: ImageLoadOptions = field(default_factory=ImageLoadOptions)

    def __post_init__(self) -> None:
        check_choice("fusion", self.fusion, FUSION_MODES)
        check_choice("on_error", self.on_error, ("fallback", "raise"))
        check_range("mix_weight", self.mix_weight, 0.0, 1.0)
        if self.top_n is not None:
            check_range("top_n", self.top_n, 0)
        check_range("batch_size", self.batch_size, 1)
        check_range("cache_bytes", self.cache_bytes, 0)
        check_range("crop_margin", self.crop_margin, 0.0)
        check_range("min_crop_size", self.min_crop_size, 0)


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
        device, dtype: Used only when building the default cropper / scorer.

    The caller's queries and candidates are never modified; results reference them.
    """

    def __init__(
        self,
        cropper: QueryCropper | str | None = None,
        scorer: Scorer | PairScorer | str | None = None,
        *,
        config: RerankerConfig | None = None,
        cache: EmbeddingCache | None = None,
        device: Any = "auto",
        dtype: Any = "auto",
    ) -> None:
        self.config = config or RerankerConfig()
        self._cropper_spec = cropper if cropper is not None else "grounding"
        self._scorer_spec = scorer if scorer is not None else "clip"
        self._cropper: QueryCropper | None = (
            None if isinstance(cropper, (str, type(None))) else cropper
        )
        self._scorer: Any = None if isinstance(scorer, (str, type(None))) else scorer
        self.cache = cache if cache is not None else EmbeddingCache(self.config.cache_bytes)
        self._device, self._dtype = device, dtype

    # ------------------------------------------------------------------ components
    @property
    def cropper(self) -> QueryCropper:
        """The cropper (built from its spec on first access)."""
        if self._cropper is None:
            from region_rerank.factory import build_cropper

            spec = str(self._cropper_spec)
            scorer = self.scorer if spec.startswith("text_match") else None
            self._cropper = build_cropper(spec, self._device, self._dtype, scorer=scorer)
        return self._cropper

    @property
    def scorer(self) -> Any:
        """The scorer (built from its spec on first access)."""
        if self._scorer is None:
            from region_rerank.factory import build_scorer

            self._scorer = build_scorer(str(self._scorer_spec), self._device, self._dtype)
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
        """
        queries, pools = self._validate(queries, candidates, decisions)
        top = self.config.top_n if top_n is None else top_n
        if top is not None:
            check_range("top_n", top, 0)
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
    def _validate(
        self,
        queries: Sequence[Query],
        candidates: Sequence[Sequence[Candidate]],
        decisions: Sequence[CropDecision] | None,
    ) -> tuple[list[Query], list[list[Candidate]]]:
        queries = list(queries)
        pools = [list(pool) for pool in candidates]
        if len(queries) != len(pools):
            raise ConfigError(f"got {len(queries)} queries but {len(pools)} candidate lists")
        if decisions is not None and len(decisions) != len(queries):
            raise ConfigError(f"got {len(queries)} queries but {len(decisions)} decisions")
        for query in queries:
            if not isinstance(query, Query):
                raise TypeError(f"expected Query objects, got {type(query).__name__}")
        for pool in pools:
            for cand in pool:
                if not isinstance(cand, Candidate):
                    raise TypeError(
                        f"expected Candidate objects, got {type(cand).__name__}; wrap entries "
                        "with region_rerank.Candidate(id=..., text=..., images=...)"
                    )
        return queries, pools

    def _degraded(
        self, query: Query, pool: list[Candidate], top_n: int | None, exc: BaseException
    ) -> RerankResult:
        logger.warning("query %r degraded to the original order: %s", query.id, exc)
        scores = [
            float(c.retrieval_score)
            if c.retrieval_score is not None and math.isfinite(float(c.retrieval_score))
            else 0.0
            for c in pool
        ]
        ranking = rank_candidates(pool, [0.0] * len(pool), top_n=top_n)
        ranking = tuple(replace(s, score=scores[s.input_index]) for s in ranking)
        decision = CropDecision.full(source="fallback", reason=f"{type(exc).__name__}: {exc}")
        return RerankResult(
            query.id, ranking, decision, {}, fallback=True, error=f"{type(exc).__name__}: {exc}"
        )

    def _decide(
        self, queries: list[Query], images: list[Image.Image]
    ) -> list[tuple[CropDecision, str | None]]:
        """Ask the cropper; in fallback mode a failing query gets FULL (error noted)."""
        decoded = [replace(q, image=img) for q, img in zip(queries, images)]
        try:
            return [(d, None) for d in self.cropper.decide_batch(decoded)]
        except Exception as exc:
            if self.config.on_error == "raise":
                raise
            first_error = exc
        out: list[tuple[CropDecision, str | None]] = []
        for query, img in zip(decoded, images):
            try:
                out.append((self.cropper.decide(query), None))
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

    def _postprocess(self, decision: CropDecision, size: tuple[int, int]) -> CropDecision:
        if decision.box is None:
            return decision if decision.image_size else replace(decision, image_size=size)
        box = decision.box
        if self.config.crop_margin > 0:
            box = pad_box(box, size, self.config.crop_margin)
        if self.config.min_crop_size > 0:
            box = ensure_min_size(box, size, self.config.min_crop_size)
        return replace(decision, box=box, image_size=size)

    def _views(self, decision: CropDecision) -> list[Any]:
        if decision.box is None:
            return [None]
        return [None, decision.box] if self.config.fusion == "max" else [decision.box]

    def _run(
        self,
        queries: list[Query],
        pools: list[list[Candidate]],
        top_n: int | None,
        decisions: Sequence[CropDecision] | None,
    ) -> list[RerankResult]:
        timings: dict[str, float] = {"batch_queries": float(len(queries))}
        t = _now()
        opts = self.config.image_options
        images = [load_image(q.image, opts) for q in queries]
        timings["decode"] = _now() - t
        t = _now()
        if decisions is None:
            decided = self._decide(queries, images)
        else:
            decided = [(d, None) for d in decisions]
        final = [self._postprocess(d, img.size) for (d, _), img in zip(decided, images)]
        timings["crop"] = _now() - t
        scorer = self.scorer
        if isinstance(scorer, PairScorer) and not hasattr(scorer, "embed_images"):
            per_query = self._score_pairs(scorer, queries, images, final, pools, timings)
        else:
            per_query = self._score_embeddings(scorer, images, final, pools, timings)
        results = []
        t = _now()
        for query, pool, decision, (view, full), (_, err) in zip(
            queries, pools, final, per_query, decided
        ):
            fused = fuse_scores(
                view,
                mode=self.config.fusion,
                full_scores=full,
                retrieval_scores=[c.retrieval_score for c in pool],
                mix_weight=self.config.mix_weight,
            )
            ranking = rank_candidates(pool, fused, top_n=top_n, view_scores=view, full_scores=full)
            results.append((query, ranking, decision, err))
        timings["fuse"] = _now() - t
        timings["total"] = sum(v for k, v in timings.items() if k != "batch_queries")
        return [
            RerankResult(q.id, r, d, timings, fallback=err is not None, error=err)
            for q, r, d, err in results
        ]

    def _score_embeddings(
        self,
        scorer: Scorer,
        images: list[Image.Image],
        decisions: list[CropDecision],
        pools: list[list[Candidate]],
        timings: dict[str, float],
    ) -> list[tuple[list[float], list[float] | None]]:
        import torch

        t = _now()
        views = [self._views(d) for d in decisions]
        view_emb = embed_views(
            scorer,
            images,
            views,
            tensor_crop=self.config.tensor_crop,
            batch_size=self.config.batch_size,
        )
        timings["embed_query"] = _now() - t
        t = _now()
        cand_emb, valid = self._candidate_embeddings(scorer, pools)
        timings["embed_candidates"] = _now() - t
        t = _now()
        out: list[tuple[list[float], list[float] | None]] = []
        for vb, ce, ok, boxes in zip(view_emb, cand_emb, valid, views):
            if ce.shape[0] == 0:
                out.append(([], None))
                continue
            sims = scorer.score(vb, ce).float().cpu()
            sims[:, ~ok] = -math.inf
            sims = torch.where(torch.isnan(sims), -math.inf, sims)
            rows = sims.tolist()
            out.append((rows[-1], rows[0] if len(boxes) == 2 else None))
        timings["score"] = _now() - t
        return out

    def _score_pairs(
        self,
        scorer: PairScorer,
        queries: list[Query],
        images: list[Image.Image],
        decisions: list[CropDecision],
        pools: list[list[Candidate]],
        timings: dict[str, float],
    ) -> list[tuple[list[float], list[float] | None]]:
        t = _now()
        out: list[tuple[list[float], list[float] | None]] = []
        opts = self.config.image_options
        for query, img, decision, pool in zip(queries, images, decisions, pools):
            if not pool:
                out.append(([], None))
                continue
            rows = [
                [float(s) for s in scorer.score_pairs(query, crop_pil(img, box), pool, opts)]
                for box in self._views(decision)
            ]
            rows = [[s if math.isfinite(s) else -math.inf for s in r] for r in rows]
            out.append((rows[-1], rows[0] if len(rows) == 2 else None))
        timings["score"] = _now() - t
        return out

    def _candidate_embeddings(
        self, scorer: Scorer, pools: list[list[Candidate]]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per pool: ``K x D`` embeddings and a validity mask. Each distinct content is
        embedded at most once across the batch; results are cached by content."""
        import torch

        namespace = (
            f"{type(scorer).__qualname__}:{getattr(scorer, 'name', '')}:{id(scorer)}:"
            f"{getattr(scorer, 'candidate_config', '')}"
        )
        resolved: dict[str, torch.Tensor] = {}
        keys: list[list[str | None]] = []
        todo: dict[str, Candidate] = {}
        for pool in pools:
            row: list[str | None] = []
            for cand in pool:
                if cand.embedding is not None or not cand.has_content:
                    row.append(None)
                    continue
                key = candidate_key(cand, namespace)
                row.append(key)
                if key not in resolved and key not in todo:
                    hit = self.cache.get(key)
                    if hit is None:
                        todo[key] = cand
                    else:
                        resolved[key] = hit
            keys.append(row)
        if todo:
            items = list(todo.items())
            bs = self.config.batch_size
            for i in range(0, len(items), bs):
                chunk = items[i : i + bs]
                emb = scorer.embed_candidates([c for _, c in chunk], self.config.image_options)
                for (key, _), vec in zip(chunk, emb):
                    resolved[key] = vec
                    self.cache.put(key, vec)
        dim, device = self._dim_device(scorer, resolved, pools)
        outs, masks = [], []
        for pool, row in zip(pools, keys):
            mat = torch.zeros(len(pool), dim, device=device)
            ok = torch.ones(len(pool), dtype=torch.bool)
            for j, (cand, ckey) in enumerate(zip(pool, row)):
                if ckey is not None:
                    mat[j] = resolved[ckey].to(device)
                elif cand.embedding is not None:
                    mat[j] = self._precomputed(cand, dim, device)
                else:
                    logger.warning(
                        "candidate %r has no text, image or embedding; ranked last", cand.id
                    )
                    ok[j] = False
            outs.append(mat)
            masks.append(ok)
        return outs, masks

    @staticmethod
    def _dim_device(
        scorer: Scorer, resolved: dict[str, torch.Tensor], pools: list[list[Candidate]]
    ) -> tuple[int, Any]:
        import torch

        if resolved:
            first = next(iter(resolved.values()))
            return int(first.shape[0]), first.device
        for pool in pools:
            for cand in pool:
                if cand.embedding is not None:
                    vec = torch.as_tensor(cand.embedding).reshape(-1)
                    return int(vec.shape[0]), getattr(scorer, "device", torch.device("cpu"))
        return 1, torch.device("cpu")

    @staticmethod
    def _precomputed(cand: Candidate, dim: int, device: Any) -> torch.Tensor:
        import torch

        vec = torch.as_tensor(cand.embedding, dtype=torch.float32).reshape(-1).to(device)
        if vec.shape[0] != dim:
            raise CandidateError(
                f"candidate {cand.id!r}: precomputed embedding has {vec.shape[0]} dimensions, "
                f"the scorer's have {dim}"
            )
        if not bool(torch.isfinite(vec).all()):
            raise CandidateError(f"candidate {cand.id!r}: precomputed embedding is not finite")
        return l2_normalize(vec[None])[0]

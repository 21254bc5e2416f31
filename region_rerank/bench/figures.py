"""The figures of ``region-rerank bench speed``: one function per figure, each returning
its JSON entries (the ratio and the medians behind it). Comparisons are timed interleaved
(:func:`~region_rerank.bench.timing.paired_medians`); "model forward" time is what
:class:`~region_rerank.bench.timing.ForwardTimer` measures on the towers (and the policy
network, where said).
"""

from __future__ import annotations

import statistics
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from region_rerank.bench.aspect import aspect_figure
from region_rerank.bench.cache_memory import measure_cache_memory
from region_rerank.bench.retrieval_speed import retrieval_figure
from region_rerank.bench.timing import ForwardTimer, paired_medians
from region_rerank.bench.workload import Workload, make_workload

if TYPE_CHECKING:
    from collections.abc import Callable

    from region_rerank.bench.speed import SpeedSettings

__all__ = ["Bench", "FIGURE_FUNCTIONS", "builtin_cropper_names"]

#: The croppers every run times, besides one per shipped weights file.
_BASE_CROPPERS = ("full", "center", "random", "text_match", "proposal")


def _shipped_name(spec_arg: str) -> str:
    return "proposal_" + spec_arg.replace("-", "_")


def builtin_cropper_names() -> tuple[str, ...]:
    """Names of the croppers every run times (``proposal_dense``... one per shipped
    weights file); a cropper of your own needs another name."""
    from region_rerank.croppers.proposal_net import SHIPPED_WEIGHTS

    return (*_BASE_CROPPERS, *(_shipped_name(n) for n in SHIPPED_WEIGHTS))


def _params(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


class Bench:
    """The components and workload shared by the figures."""

    def __init__(self, settings: SpeedSettings) -> None:
        from region_rerank.croppers.baselines import CenterCropper, RandomCropper
        from region_rerank.croppers.full import FullImageCropper
        from region_rerank.croppers.proposal import SHIPPED_WEIGHTS, ProposalPolicyCropper
        from region_rerank.croppers.specs import build_cropper
        from region_rerank.croppers.text_match import TextMatchCropper
        from region_rerank.demo.scorer import DemoScorer
        from region_rerank.model_options import ModelOptions

        self.settings = settings
        self.scorer = DemoScorer(model_options=ModelOptions(device="cpu"))
        self.proposal = ProposalPolicyCropper(self.scorer)
        shipped = {  # proposal_dense, proposal_objects, ..., one per SHIPPED_WEIGHTS entry
            _shipped_name(name): ProposalPolicyCropper(self.scorer, path)
            for name, path in SHIPPED_WEIGHTS.items()
        }
        self.dense = shipped["proposal_dense"]
        self.croppers: dict[str, Any] = {
            "full": FullImageCropper(),
            "center": CenterCropper(),
            "random": RandomCropper(),
            "text_match": TextMatchCropper(self.scorer),
            "proposal": self.proposal,
            **shipped,
        }
        for name, spec in settings.croppers:  # the user's own (names checked by the settings)
            self.croppers[name] = build_cropper(spec, scorer=self.scorer)
        n_queries = max(settings.batch_queries, 4)
        self.world: Workload = make_workload(n_queries, max(settings.pool_sizes[1], 100))
        self.scorer_modules = [self.scorer.tower, self.scorer.text_model]

    def reranker(self, cropper: str, cache_bytes: int = 256 * 1024 * 1024) -> Any:
        from region_rerank.reranker import CroppedReranker, RerankerConfig

        return CroppedReranker(
            self.croppers[cropper], self.scorer, config=RerankerConfig(cache_bytes=cache_bytes)
        )

    def models(self) -> dict[str, Any]:
        text = self.scorer.text_model
        return {
            "scorer": "demo (all-MiniLM-L6-v2 text tower, real weights + CNN image tower)",
            "text_tower_params": _params(text),
            "image_tower_params": _params(self.scorer.tower),
            "image_input": list(self.scorer.image_spec.size),
            "light_cropper": "proposal (shipped weights, the scorer's view embeddings)",
            "light_cropper_params": _params(self.proposal.net),
            "dense_cropper": f"proposal_dense (shipped dense weights: {self.dense.encoder.card()})",
            "light_cropper_actions": 1 + len(self.proposal._boxes(_blank(self.world), "")[0]),
            "query_canvas": list(self.world.canvas),
        }


def _blank(world: Workload) -> Any:
    from PIL import Image

    return Image.new("RGB", world.canvas)


def _median_share(fn: Callable[[], Any], timer: ForwardTimer, repeats: int) -> tuple[float, float]:
    """Median over runs of (wall seconds, seconds inside timed forwards) of ``fn``."""
    fn()
    walls, inside = [], []
    with timer:
        for _ in range(repeats):
            timer.reset()
            start = time.perf_counter()
            fn()
            walls.append(time.perf_counter() - start)
            inside.append(timer.seconds)
    shares = [i / w for i, w in zip(inside, walls)]
    return statistics.median(walls), statistics.median(shares)


def _cold_rerank(rr: Any, query: Any, pool: Any) -> Any:
    rr.cache.clear()
    return rr.rerank(query, pool)


def _cache_figure(b: Bench) -> dict[str, Any]:
    cold_rr, warm_rr = b.reranker("full"), b.reranker("full")
    query, pool = b.world.queries[0], b.world.kb[: b.settings.cache_candidates]
    cold, warm, ratio = paired_medians(
        partial(cold_rr.rerank, query, pool),
        partial(warm_rr.rerank, query, pool),
        b.settings.repeats,
        setup_a=cold_rr.cache.clear,
    )
    return {"cache_cold_s": cold, "cache_warm_s": warm, "cache_speedup": ratio}


def _batch_figure(b: Bench) -> dict[str, Any]:
    k = b.settings.pool_sizes[0]
    queries = b.world.queries[: b.settings.batch_queries]
    pools = [b.world.pool(i, k) for i in range(len(queries))]
    n = b.settings.repeats
    out: dict[str, Any] = {}
    # The headline uses the light cropper; "_full" is the plain re-rank without cropping.
    for cropper, name in (("proposal", ""), ("full", "_full")):
        rr = b.reranker(cropper)

        def one_by_one(rr: Any = rr) -> None:
            for q, p in zip(queries, pools):
                rr.rerank(q, p)

        def batched(rr: Any = rr) -> None:
            rr.rerank_batch(queries, pools)

        # The cold variant embeds every pool again in every run: fewer runs (at most 3).
        for label, setup, runs in (("", None, n), ("_cold", rr.cache.clear, min(n, 3))):
            if name and label:
                continue
            single, batch, ratio = paired_medians(
                one_by_one,
                batched,
                runs,
                setup_a=setup,
                setup_b=setup,
                warmup=1 if runs == n else 0,
            )
            out[f"batch_single_s{name}{label}"] = single
            out[f"batch_batched_s{name}{label}"] = batch
            out[f"batch_speedup{name}{label}"] = ratio
    return out


def _tensor_crop_figure(b: Bench) -> dict[str, Any]:
    import torch
    from transformers import CLIPImageProcessor, CLIPImageProcessorPil

    from region_rerank.images import crop_pil, crop_resize, load_image, pil_to_tensor
    from region_rerank.proposals import grid_proposals

    query = make_workload(1, 8, canvas=(640, 480)).queries[0].image
    boxes = grid_proposals((640, 480))[: b.settings.crop_boxes]
    fast, slow = CLIPImageProcessor(), CLIPImageProcessorPil()
    side = int(fast.crop_size["height"])
    mean, std = tuple(fast.image_mean), tuple(fast.image_std)

    def tensor_path() -> torch.Tensor:
        img = load_image(query)
        return crop_resize(
            pil_to_tensor(img),
            list(boxes),
            (side, side),
            center_crop=True,
            mean=mean,
            std=std,
            resize_uint8=True,
        )

    def pil_path(processor: Any) -> torch.Tensor:
        img = load_image(query)
        crops = [crop_pil(img, box) for box in boxes]
        out: torch.Tensor = processor(images=crops, return_tensors="pt")["pixel_values"]
        return out

    n = b.settings.repeats
    t_pil, t_tensor, ratio = paired_medians(partial(pil_path, slow), tensor_path, n)
    t_tv, _, ratio_tv = paired_medians(partial(pil_path, fast), tensor_path, n)
    diff = float((tensor_path() - pil_path(fast)).abs().mean())
    return {
        "tensor_crop_s": t_tensor,
        "pil_crop_s": t_pil,
        "torchvision_processor_crop_s": t_tv,
        "tensor_crop_speedup": ratio,
        "tensor_crop_speedup_vs_torchvision_processor": ratio_tv,
        "tensor_crop_mean_abs_diff": diff,
        "tensor_crop_setup": f"640x480 PNG, {len(boxes)} crops -> {side}x{side} (CLIP ViT-L/14)",
    }


def _k_figure(b: Bench) -> dict[str, Any]:
    small, large = b.settings.pool_sizes
    query = b.world.queries[0]
    out: dict[str, Any] = {}
    for cropper in ("full", "proposal"):
        rr = b.reranker(cropper)
        t_large, t_small, ratio = paired_medians(
            partial(rr.rerank, query, b.world.pool(0, large)),
            partial(rr.rerank, query, b.world.pool(0, small)),
            b.settings.repeats,
        )
        suffix = "" if cropper == "full" else f"_{cropper}"
        out[f"k{small}_s{suffix}"] = t_small
        out[f"k{large}_s{suffix}"] = t_large
        out[f"k_scaling_{large}_over_{small}{suffix}"] = ratio
    return out


def _overhead_figure(b: Bench) -> dict[str, Any]:
    k = b.settings.pool_sizes[0]
    out: dict[str, Any] = {}
    for cropper in ("proposal", "full"):
        rr = b.reranker(cropper)
        modules = list(b.scorer_modules)
        if cropper == "proposal":
            modules.append(b.proposal.net)
        query, pool = b.world.queries[1], b.world.pool(1, k)
        timer = ForwardTimer(modules)
        suffix = "" if cropper == "proposal" else f"_{cropper}"
        rr.rerank(query, pool)
        wall, share = _median_share(partial(rr.rerank, query, pool), timer, b.settings.repeats)
        out[f"rerank_k{k}_s{suffix}"] = wall
        out[f"non_model_overhead{suffix}"] = 1.0 - share
        if cropper == "proposal":
            timer = ForwardTimer(modules)
            wall, share = _median_share(
                partial(_cold_rerank, rr, query, pool), timer, b.settings.repeats
            )
            out["non_model_overhead_cold"] = 1.0 - share
    return out


def _crop_seconds(rr: Any, query: Any, pool: Any) -> float:
    seconds: float = rr.rerank(query, pool).timings["crop"]
    return seconds


def _cropper_figure(b: Bench) -> dict[str, Any]:
    from region_rerank.croppers.proposal import ProposalPolicyCropper

    small, large = b.settings.pool_sizes
    query = b.world.queries[2]
    pool_small, pool_large = b.world.pool(2, small), b.world.pool(2, large)
    plain_rr = b.reranker("full")
    plain_rr.rerank(query, pool_large)
    plains: list[float] = []
    ratio, growth, per_query = {}, {}, {}
    for name in b.croppers:
        rr = b.reranker(name)
        rr.rerank(query, pool_large)
        ratios, growths, crops = [], [], []
        for _ in range(b.settings.repeats):
            t = time.perf_counter()
            plain_rr.rerank(query, pool_small)
            plain = time.perf_counter() - t
            c_small = _crop_seconds(rr, query, pool_small)
            c_large = _crop_seconds(rr, query, pool_large)
            plains.append(plain)
            crops.append(c_small)
            ratios.append(c_small / plain)
            growths.append(c_large / c_small)
        per_query[name] = statistics.median(crops)
        ratio[name] = statistics.median(ratios)
        growth[name] = statistics.median(growths)
    timer = ForwardTimer(b.scorer_modules)
    wall, share = _median_share(
        partial(b.proposal.decide_batch, [query]), timer, b.settings.repeats
    )
    return {
        "plain_rerank_s": statistics.median(plains),
        "cropper_s": per_query,
        "cropper_cost_ratio": ratio,
        "dense_cropper_cost_ratio": ratio["proposal_dense"],
        "light_cropper_gflops": {
            name: _decision_flops(cropper, query) / 1e9
            for name, cropper in b.croppers.items()
            if isinstance(cropper, ProposalPolicyCropper)
        },
        f"cropper_cost_k{large}_over_k{small}": growth,
        "light_cropper_s": wall,
        "light_cropper_over_floor": 1.0 / share,
    }


def _decision_flops(cropper: Any, query: Any) -> float:
    """FLOPs of one decision (matrix products and convolutions, torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        cropper.decide_batch([query])
    return float(counter.get_total_flops())


def _memory_figure(b: Bench) -> dict[str, Any]:
    n = b.settings.cache_entries
    dim = int(b.scorer.embed_texts(["x"]).shape[1])
    full, bounded = measure_cache_memory(n, dim, [256 * 1024 * 1024, n * dim * 4 // 2])
    del bounded["peak_rss_growth_bytes"]
    return {
        "cache_peak_mb": full["peak_rss_growth_bytes"] / 2**20,
        "cache_held_mb": full["bytes_held"] / 2**20,
        "cache_entries_held": full["entries_held"],
        "cache_bound_held": bool(full["bound_held"] and bounded["bound_held"]),
        "cache_half_bound": bounded,
        "cache_full_bound": full,
    }


#: (name, function) of every figure, in the order they are measured.
FIGURE_FUNCTIONS: tuple[tuple[str, Callable[[Bench], dict[str, Any]]], ...] = (
    ("cache", _cache_figure),
    ("batch", _batch_figure),
    ("tensor crop", _tensor_crop_figure),
    ("pool size", _k_figure),
    ("overhead", _overhead_figure),
    ("croppers", _cropper_figure),
    ("aspect ratio", aspect_figure),
    ("retrieval", retrieval_figure),
    ("cache memory", _memory_figure),
)

"""The main job: ``region-rerank demo``, the offline end-to-end comparison.

Generates the synthetic clutter world's test split, builds top-20 pools with the demo
scorer (real MiniLM text tower + trained image tower), and compares the full image, the
training-free croppers, the learned policy when its weights are shipped, and the oracle
crop (ground-truth box). Writes the report folder and returns the metrics.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

__all__ = ["DEMO_METHODS", "run_demo"]

logger = logging.getLogger(__name__)


def _default_methods() -> tuple[str, ...]:
    from region_rerank.croppers.proposal import WEIGHTS_PATH

    learned = ("proposal",) if WEIGHTS_PATH.is_file() else ()
    return ("center", "random", "text_match", *learned, "oracle")


#: Methods compared by default (besides the always-present ``full`` baseline); the learned
#: ``proposal`` policy is included when its weights are shipped.
DEMO_METHODS = _default_methods()


def _methods(names: tuple[str, ...], scorer: Any) -> dict[str, Any]:
    from region_rerank.factory import build_cropper

    out: dict[str, Any] = {}
    for name in names:
        if name == "oracle":
            out[name] = "oracle"
        else:
            out[name] = build_cropper(name, scorer=scorer)
    return out


def run_demo(
    out_dir: str | Path = "out/demo",
    *,
    n_test: int = 500,
    seed: int = 0,
    methods: tuple[str, ...] = DEMO_METHODS,
    pool_k: int = 20,
    batch_size: int = 32,
    progress: bool = True,
    resume: bool = True,
) -> dict[str, dict[str, Any]]:
    """Generate the world (once), build pools, evaluate ``methods``; return the metrics.

    Everything is written under ``out_dir``: ``world/`` (the generated data) and
    ``report/`` (metrics.json, metrics.md, methods.png, examples.png, records).
    """
    from region_rerank.demo.scorer import DemoScorer
    from region_rerank.demo.world import make_world
    from region_rerank.eval.runner import load_split_dataset, run_eval
    from region_rerank.model_options import ModelOptions

    out = Path(out_dir)
    world = out / "world"
    t0 = time.perf_counter()
    if not (world / "test" / "queries.jsonl").is_file():
        make_world(world, seed=seed, n_train=0, n_val=0, n_test=n_test)
    logger.info("world ready in %.1fs", time.perf_counter() - t0)
    dataset = load_split_dataset(world, "test")
    scorer = DemoScorer(model_options=ModelOptions(device="cpu"))
    return run_eval(
        dataset,
        _methods(methods, scorer),
        scorer,
        out / "report",
        batch_size=batch_size,
        progress=progress,
        resume=resume,
        build_pools_if_missing=True,
        pool_k=pool_k,
    )

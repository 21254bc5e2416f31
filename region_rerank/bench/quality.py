"""``region-rerank bench quality``: croppers compared over several generated worlds.

For every seed, a demo world's test split is generated (the same scenes as ``bench make
--seed S`` with the same options), top-``pool_k`` pools are built with the scorer, every
method re-ranks them through the evaluation harness (:func:`region_rerank.eval.runner.run_eval`),
and the figures are reported as the mean and the sample standard deviation over seeds:
CondR@1 (R@1 among queries whose pool holds a positive), R@1, R@5, MRR, coverage, crop
rate, CondR@1 per question type and per sub-type (``size:smallest``, ``position:corner``...),
the share of the full-to-oracle CondR@1 gap each method closes, and ``kept_first``: of the
queries the full image already ranks a positive first (with its own first stage under
``retrieve``), the share the method still ranks a positive first.

Seeds: the worlds must not have been used to choose anything (a model, an epoch, a
setting). The project keeps seed 0 for training and validation, 1-9 for development and
100-102 for the reported figures.

Everything is written under ``work_dir`` (worlds, pools, records, per-seed reports), so an
interrupted run resumes; the report is a JSON file whose layout is
:data:`REPORT_FORMAT`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank.errors import ConfigError
from region_rerank.model_options import ModelOptions

if TYPE_CHECKING:
    from region_rerank.reranker import RerankerConfig

__all__ = ["REPORT_FORMAT", "QUALITY_METHODS", "run_quality", "format_quality_table"]

logger = logging.getLogger(__name__)

#: Format tag of the JSON report.
REPORT_FORMAT = "region-rerank-bench-quality/1"
#: Methods compared by default (``full`` is always included).
QUALITY_METHODS: tuple[str, ...] = ("center", "random", "text_match", "proposal", "oracle")
_FIGURES = {
    "cond_r1": "CondR@1",
    "r1": "R@1",
    "r5": "R@5",
    "mrr": "MRR",
    "coverage": "coverage",
    "crop_rate": "crop_rate",
}


def _sd(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _summary(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return None, None
    return statistics.fmean(kept), _sd(kept)


def _subtype(query: Any) -> str | None:
    detail = query.metadata.get("detail")
    if query.question_type is None or not isinstance(detail, str):
        return None
    return f"{query.question_type}:{detail.split(':')[0]}"


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"seeds must be ints >= 0, got {s!r}")
        out.append(s)
    if not out or len(set(out)) != len(out):
        raise ConfigError(f"seeds must be a non-empty list without repeats, got {list(seeds)}")
    return out


def _world_key(n_test: int, world: Mapping[str, Any]) -> str:
    text = json.dumps({"n_test": n_test, **world}, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def _report_name(scorer: str, retrieve: str | None, rerank: RerankerConfig | None = None) -> str:
    """A world's report folder: one per scorer (its pools), first-stage mode and scoring
    settings (the fusion, with its weights for ``blend``)."""
    from region_rerank.eval.runner import scoring_settings
    from region_rerank.reranker import RerankerConfig

    rerank = rerank or RerankerConfig()
    name = "report" if retrieve is None else f"report-retrieve-{retrieve}"
    if rerank.fusion != "crop":
        name += f"-fusion-{rerank.fusion}"
    if rerank.fusion == "blend":
        name += f"-{rerank.full_weight:g}"
        if rerank.close_margin > 0:
            name += f"-close-{rerank.close_margin:g}-{rerank.close_full_weight:g}"
    others = {
        k: v
        for k, v in scoring_settings(rerank).items()
        if k not in ("fusion", "full_weight", "close_margin", "close_full_weight")
    }
    if others:
        name += "-" + _short_hash(json.dumps(others, sort_keys=True))
    if scorer != "demo":
        name += "-" + _short_hash(scorer)
    return name


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def _seed_figures(report_dir: Path, results: Mapping[str, Any], dataset: Any) -> dict[str, Any]:
    from region_rerank.eval.metrics import compute_metrics
    from region_rerank.eval.runner import read_records

    groups: dict[str, list[int]] = {}
    for i, q in enumerate(dataset.queries):
        key = _subtype(q)
        if key is not None:
            groups.setdefault(key, []).append(i)
    out: dict[str, Any] = {}
    full_first = [
        bool(r.ranked_ids) and r.ranked_ids[0] in r.positives
        for r in read_records(report_dir, "full", dataset.queries)
    ]
    for name, m in results.items():
        fig = {key: m[src] for key, src in _FIGURES.items()}
        fig["per_type"] = {t: v["CondR@1"] for t, v in m["by_question_type"].items()}
        fig["per_type_n"] = {t: v["num_covered"] for t, v in m["by_question_type"].items()}
        records = read_records(report_dir, name, dataset.queries)
        kept = [
            bool(r.ranked_ids) and r.ranked_ids[0] in r.positives
            for r, first in zip(records, full_first)
            if first
        ]
        fig["kept_first"] = sum(kept) / len(kept) if kept else None
        sub: dict[str, Any] = {}
        sub_n: dict[str, int] = {}
        for key, idx in sorted(groups.items()):
            sub_m = compute_metrics([records[i] for i in idx], (1,))
            sub[key] = sub_m["CondR@1"]
            sub_n[key] = sub_m["num_covered"]
        fig["per_subtype"] = sub
        fig["per_subtype_n"] = sub_n
        out[name] = fig
    return out


def _aggregate(per_seed: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    seeds = list(per_seed)
    names = list(per_seed[seeds[0]])
    methods: dict[str, Any] = {}
    for name in names:
        rows = [per_seed[s][name] for s in seeds]
        entry: dict[str, Any] = {}
        for key in (*_FIGURES, "kept_first"):
            entry[key], entry[f"{key}_sd"] = _summary([r[key] for r in rows])
        for group in ("per_type", "per_subtype"):
            keys = sorted({k for r in rows for k in r[group]})
            entry[group] = {}
            for k in keys:
                mean, sd = _summary([r[group].get(k) for r in rows])
                n = sum(int(r[f"{group}_n"].get(k, 0)) for r in rows)
                entry[group][k] = {"cond_r1": mean, "cond_r1_sd": sd, "n_covered": n}
        entry["per_seed"] = {str(s): per_seed[s][name] for s in seeds}
        methods[name] = entry
    return methods


def _gap_closed(per_seed: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """Per method: mean (sd) over seeds of (method - full) / (oracle - full) on CondR@1."""
    out: dict[str, Any] = {}
    first = next(iter(per_seed.values()))
    if "oracle" not in first or "full" not in first:
        return out
    for name in first:
        shares = []
        for fig in per_seed.values():
            full, oracle, mine = (fig[n]["cond_r1"] for n in ("full", "oracle", name))
            if None in (full, oracle, mine) or math.isclose(oracle, full):
                continue
            shares.append((mine - full) / (oracle - full))
        mean, sd = _summary(shares)
        out[name] = {"mean": mean, "sd": sd}
    return out


def run_quality(
    seeds: Sequence[int],
    *,
    n_test: int = 500,
    world: Mapping[str, Any] | None = None,
    methods: Sequence[str] = QUALITY_METHODS,
    scorer: str = "demo",
    work_dir: str | os.PathLike[str] = "out/bench_quality",
    pool_k: int = 20,
    batch_size: int = 32,
    model_options: ModelOptions | None = None,
    retrieve: str | None = None,
    progress: bool = True,
    rerank_config: RerankerConfig | None = None,
) -> dict[str, Any]:
    """Generate one world per seed, evaluate ``methods`` on each, aggregate over seeds.

    Args:
        seeds: World seeds (distinct, >= 0). Use seeds nothing was chosen on.
        n_test: Test queries per world.
        world: Scene options of :func:`region_rerank.demo.world.make_world`
            (``distractors``, ``target_scale``, ``clutter``, ``phrasing``...).
        methods: Cropper specs (``center``, ``text_match``, ``proposal[:WEIGHTS]``...) or
            ``oracle``; ``NAME=SPEC`` names a method. ``full`` is always included.
        scorer: Scorer spec that builds the pools and re-ranks.
        work_dir: Worlds, pools and records are kept here (resumable).
        pool_k: Pool size.
        batch_size: Queries per re-ranking batch.
        model_options: How the scorer loads (default: on the CPU).
        retrieve: ``None``: every method re-ranks the same full-image top-``pool_k`` pools.
            ``"full"`` / ``"view"`` / ``"fused"``: each method retrieves its own pool from
            an index of the KB (see :func:`region_rerank.eval.runner.run_eval`), so
            ``coverage`` is per method and R@1 end to end.
        progress: Show progress bars.
        rerank_config: How the views are scored (the fusion and its weights, see
            :mod:`region_rerank.fusion`; default: ``crop``); each setting has its own
            report folder.

    Returns:
        The report (also the JSON written by the CLI): ``format``, ``seeds``, ``n_test``,
        ``world``, ``scorer``, ``methods`` (per method: each figure's mean and ``*_sd``,
        ``per_type`` and ``per_subtype`` CondR@1, ``per_seed``), ``gap_closed`` and
        ``seconds``.

    Raises:
        ConfigError: Bad seeds, counts, world options or method specs.
    """
    from region_rerank._validate import check_range
    from region_rerank.demo.world import make_world
    from region_rerank.eval.runner import ORACLE, load_split_dataset, run_eval, scoring_settings
    from region_rerank.factory import build_cropper, build_scorer
    from region_rerank.reranker import RerankerConfig

    seeds = _check_seeds(seeds)
    check_range("n_test", n_test, 1)
    rerank_config = rerank_config or RerankerConfig()
    world = dict(world or {})
    started = time.perf_counter()
    options = model_options or ModelOptions(device="cpu")
    score = build_scorer(scorer, model_options=options)
    specs: dict[str, str] = {}
    for item in methods:
        name, _, spec = item.partition("=") if "=" in item else (item, "", item)
        if name in specs or name == "full":
            raise ConfigError(f"method name {name!r} is repeated or reserved")
        specs[name] = spec
    croppers = {
        n: ORACLE if s == ORACLE else build_cropper(s, scorer=score) for n, s in specs.items()
    }
    root = Path(work_dir) / f"worlds-{_world_key(n_test, world)}"
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        folder = root / f"seed-{seed}"
        if not (folder / "world" / "test" / "queries.jsonl").is_file():
            logger.info("seed %d: generating %d test scenes", seed, n_test)
            make_world(folder / "world", seed=seed, n_train=0, n_val=0, n_test=n_test, **world)
        dataset = load_split_dataset(folder / "world", "test")
        report_dir = folder / _report_name(scorer, retrieve, rerank_config)
        results = run_eval(
            dataset,
            croppers,
            score,
            report_dir,
            batch_size=batch_size,
            n_examples=0,
            progress=progress,
            build_pools_if_missing=True,
            pool_k=pool_k,
            retrieve=retrieve,
            reranker_config=rerank_config,
        )
        per_seed[seed] = _seed_figures(report_dir, results, dataset)
        logger.info(
            "seed %d: %s",
            seed,
            ", ".join(f"{n} {f['cond_r1']:.3f}" for n, f in per_seed[seed].items()),
        )
    return {
        "format": REPORT_FORMAT,
        "seeds": seeds,
        "n_test": n_test,
        "world": {k: (list(v) if isinstance(v, tuple) else v) for k, v in world.items()},
        "scorer": scorer,
        "pool_k": pool_k,
        "retrieve": retrieve,
        "fusion": rerank_config.fusion,
        **({"full_weight": rerank_config.full_weight} if rerank_config.fusion == "blend" else {}),
        "reranker": scoring_settings(rerank_config),
        "methods": _aggregate(per_seed),
        "gap_closed": _gap_closed(per_seed),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _pm(mean: float | None, sd: float | None) -> str:
    return "-" if mean is None else f"{mean:.3f} ± {sd or 0.0:.3f}"


def format_quality_table(report: Mapping[str, Any]) -> str:
    """A Markdown table of the report: mean ± sd over seeds per method."""
    gap = report.get("gap_closed", {})
    lines = [
        f"seeds {report['seeds']}, {report['n_test']} test queries each, scorer "
        f"{report['scorer']}, world {report['world'] or 'default'}, first stage "
        f"{report.get('retrieve') or 'shared full-image pools'}",
        "",
        "| method | CondR@1 | R@1 | R@5 | MRR | coverage | crop rate | gap closed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in report["methods"].items():
        g = gap.get(name, {})
        cells = [_pm(m[k], m[f"{k}_sd"]) for k in _FIGURES]
        share = "-" if g.get("mean") is None else f"{100 * g['mean']:.0f}%"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {share} |")
    return "\n".join(lines) + "\n"

"""The evaluation runner: compare croppers on one dataset, resumably, and write a report.

:func:`run_eval` re-ranks every query's pool once per method, always including the
``"full"`` baseline (:class:`~region_rerank.croppers.full.FullImageCropper`) whose
ranking gives each record's ``full_rank_first_positive``, and the special ``"oracle"``
method that crops the dataset's ground-truth box (FULL when a query has none). All methods
share one :class:`~region_rerank.cache.EmbeddingCache`, so each distinct candidate is
embedded once for the whole run.

Everything is written under ``out_dir``::

    run.json                 the run's fingerprint (dataset, query count, scorer, methods)
    records/{method}.jsonl   one JSON line per query, appended and flushed per batch
    metrics.json             method -> compute_metrics(...) output (+ num_fallback,
                             sec_per_query)
    metrics.md               the Markdown table
    methods.png              bar chart of CondR@1, MRR, R@1 and coverage per method
    examples.png             example queries with each method's box and the GT box

An interrupted run restarted with the same arguments skips the queries already recorded.

Example:
    >>> data = load_eval_data("world", split="test")  # doctest: +SKIP
    >>> run_eval(data, {"oracle": "oracle"}, scorer, "runs/demo")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, TypeVar

from region_rerank._validate import check_choice
from region_rerank.boxes import clamp_box
from region_rerank.errors import ConfigError
from region_rerank.eval._rows import iter_jsonl
from region_rerank.eval._schema import EvalDataset, EvalQuery
from region_rerank.eval.metrics import EvalRecord, compute_metrics, first_positive_rank
from region_rerank.progress import progress_bar
from region_rerank.types import CropDecision, RerankResult

__all__ = [
    "FULL",
    "ORACLE",
    "load_eval_data",
    "load_split_dataset",
    "read_records",
    "run_eval",
    "scoring_settings",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Name of the always-computed full-image baseline.
FULL = "full"
#: The method spec that crops the ground-truth box.
ORACLE = "oracle"
_RUN_VERSION = 2


def load_split_dataset(
    root: str | os.PathLike[str], split: str, *, lenient: bool = False
) -> EvalDataset:
    """Load a split folder whose KB lives one level up (the demo world's layout).

    ``{root}/kb.jsonl`` is the KB (image paths relative to ``root``);
    ``{root}/{split}/queries.jsonl`` and the optional ``{root}/{split}/pools.jsonl`` hold
    the queries (image paths relative to the split folder) and pools.

    Raises:
        FileNotFoundError: A required file is missing.
        DatasetFormatError: A malformed row (strict mode).
    """
    from region_rerank.eval.datasets import load_jsonl_dataset

    base = Path(root)
    return load_jsonl_dataset(
        base / split, name=f"{base.name}/{split}", lenient=lenient, kb_path=base / "kb.jsonl"
    )


def load_eval_data(
    data: str | os.PathLike[str], split: str | None = None, *, lenient: bool = False
) -> EvalDataset:
    """Load the generic JSONL layout from ``data`` or its ``split`` sub-folder.

    With ``split``: ``{data}/{split}`` is loaded as a self-contained folder when it has
    its own ``kb.jsonl``, otherwise with ``{data}/kb.jsonl`` (:func:`load_split_dataset`).
    """
    from region_rerank.eval.datasets import load_jsonl_dataset

    root = Path(data)
    if split is None:
        return load_jsonl_dataset(root, lenient=lenient)
    folder = root / split
    if (folder / "kb.jsonl").is_file():
        return load_jsonl_dataset(folder, name=f"{root.name}/{split}", lenient=lenient)
    return load_split_dataset(root, split, lenient=lenient)


@dataclass
class _Method:
    name: str
    path: Path
    reranker: Any
    oracle: bool
    done: dict[str, dict[str, Any]]
    retriever: Any = None


def _file_stem(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "method"
    if safe != name:
        safe += "-" + hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
    return safe


def _read_records(path: Path, known: set[str]) -> dict[str, dict[str, Any]]:
    """Records already written for one method; a torn last line (interrupt) is dropped and
    the file rewritten without it."""
    if not path.is_file():
        return {}
    done: dict[str, dict[str, Any]] = {}
    bad = 0
    for _, value in iter_jsonl(path):
        if isinstance(value, dict) and isinstance(value.get("query_id"), str):
            if value["query_id"] in known:
                done[value["query_id"]] = value
            continue
        bad += 1
    if bad:
        logger.warning("%s: dropping %d unreadable record line(s) (interrupted write?)", path, bad)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in done.values()), encoding="utf-8")
        tmp.replace(path)
    return done


def _check_fingerprint(out: Path, fingerprint: dict[str, Any], resume: bool) -> None:
    run_file = out / "run.json"
    records = out / "records"
    if resume and run_file.is_file():
        try:
            saved = json.loads(run_file.read_text(encoding="utf-8"))
            old, version = saved.get("fingerprint"), saved.get("version")
        except (json.JSONDecodeError, AttributeError):
            old, version = None, None
        if version != _RUN_VERSION:
            raise ConfigError(
                f"{out} was written by another version of region-rerank (run format "
                f"{version}, this one writes {_RUN_VERSION}: learned croppers' weights are now "
                "part of a run), so its records cannot be checked against this run; use "
                "another output folder or resume=False (--no-resume) to start over"
            )
        if old != fingerprint:
            raise ConfigError(
                f"{out} holds a different run ({old}) than this one ({fingerprint}); use "
                "another output folder or resume=False (--no-resume) to start over"
            )
    elif not resume and records.is_dir():
        for stale in records.glob("*.jsonl"):
            stale.unlink()
    records.mkdir(parents=True, exist_ok=True)
    payload = {"version": _RUN_VERSION, "fingerprint": fingerprint}
    run_file.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _oracle_decision(query: EvalQuery) -> CropDecision:
    if query.box is None:
        return CropDecision.full(source=ORACLE, reason="no ground-truth box")
    return CropDecision.region(query.box, source=ORACLE)


def _record(query: EvalQuery, result: RerankResult, full_rank: int | None) -> dict[str, Any]:
    ids = result.ids
    decision = result.decision
    area = 1.0
    if decision.box is not None and decision.image_size:
        clamped = clamp_box(decision.box.as_tuple(), decision.image_size)
        w, h = decision.image_size
        area = 1.0 if clamped is None else min(1.0, clamped.area / float(max(1, w * h)))
    batch = float(result.timings.get("batch_queries", 1.0)) or 1.0
    return {
        "query_id": query.id,
        "ranked_ids": ids,
        "scores": [s.score if math.isfinite(s.score) else None for s in result.ranking],
        "positives": sorted(query.positives),
        "question_type": query.question_type,
        "decision": decision.to_dict(),
        "crop_area_fraction": area,
        "first_positive_rank": first_positive_rank(ids, query.positives),
        "full_rank_first_positive": full_rank,
        "fallback": result.fallback,
        "error": result.error,
        "seconds": float(result.timings.get("total", 0.0)) / batch,
    }


def _to_eval_record(rec: Mapping[str, Any]) -> EvalRecord:
    return EvalRecord(
        query_id=rec["query_id"],
        ranked_ids=tuple(rec["ranked_ids"]),
        positives=frozenset(rec["positives"]),
        decision_action=rec["decision"]["action"],
        crop_area_fraction=rec["crop_area_fraction"],
        full_rank_first_positive=rec["full_rank_first_positive"],
        question_type=rec["question_type"],
    )


def _with_pools(
    dataset: EvalDataset,
    scorer: Any,
    build: bool,
    pool_k: int,
    out: Path,
    progress: bool,
    cache: Any,
    resume: bool,
) -> EvalDataset:
    if dataset.pools:
        missing = sum(1 for q in dataset.queries if q.id not in dataset.pools)
        if missing:
            logger.warning("%d queries have no pool; they count as misses", missing)
        return dataset
    if not build:
        raise ConfigError(
            f"dataset {dataset.name!r} has no retrieval pools (pools.jsonl); build them with "
            "`region-rerank pools --data DIR --scorer SPEC`, or pass "
            "build_pools_if_missing=True (CLI: --build-pools)"
        )
    from region_rerank.eval.datasets import load_pools_jsonl
    from region_rerank.eval.pools import build_pools, write_pools_jsonl

    saved = out / "pools.jsonl"
    if resume and saved.is_file():  # built by an earlier run with the same out_dir
        logger.info("reusing pools from %s", saved)
        pools = load_pools_jsonl(saved, dataset.kb, frozenset(q.id for q in dataset.queries))
        return replace(dataset, pools=pools)
    pools = build_pools(dataset, scorer, k=pool_k, progress=progress, cache=cache)
    write_pools_jsonl(pools, out / "pools.jsonl")
    return replace(dataset, pools=pools)


def _check_methods(methods: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``methods`` and prepend the full baseline: name -> cropper or ``"oracle"``."""
    from region_rerank.croppers.base import QueryCropper
    from region_rerank.croppers.full import FullImageCropper

    specs: dict[str, Any] = {FULL: FullImageCropper()}
    for name, spec in methods.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"method names must be non-empty strings, got {name!r}")
        if name == FULL and not isinstance(spec, FullImageCropper):
            raise ConfigError(f"method name {FULL!r} is reserved for the full-image baseline")
        if spec != ORACLE and not isinstance(spec, QueryCropper):
            raise ConfigError(f"method {name!r}: expected a QueryCropper or 'oracle', got {spec!r}")
        specs[name] = spec
    stems = [_file_stem(n) for n in specs]
    if len(set(stems)) != len(stems):
        raise ConfigError(f"method names collide as file names: {list(specs)}")
    return specs


def _identity(method: Any) -> str | None:
    """A digest of a method's learned weights (``weights_digest()``), else ``None``."""
    digest = getattr(method, "weights_digest", None)
    return str(digest()) if callable(digest) else None


def _make_methods(
    specs: Mapping[str, Any], scorer: Any, cfg: Any, cache: Any, out: Path, known: set[str]
) -> list[_Method]:
    """One reranker per method, all sharing ``cache``; earlier records loaded."""
    from region_rerank.croppers.full import FullImageCropper
    from region_rerank.reranker import CroppedReranker

    out_methods = []
    for name, spec in specs.items():
        path = out / "records" / f"{_file_stem(name)}.jsonl"
        cropper = FullImageCropper() if spec == ORACLE else spec
        reranker = CroppedReranker(cropper, scorer, config=cfg, cache=cache)
        done = _read_records(path, known)
        out_methods.append(_Method(name, path, reranker, spec == ORACLE, done))
    return out_methods


def _attach_retrievers(
    methods: list[_Method],
    dataset: EvalDataset,
    scorer: Any,
    cache: Any,
    mode: str,
    k: int,
    progress: bool,
) -> None:
    """Give every method a first stage of its own over one index of the KB."""
    from region_rerank.eval.pools import kb_index
    from region_rerank.retrieval import RegionRetriever

    kb = {kid: entry.to_candidate() for kid, entry in dataset.kb.items()}
    index = kb_index(dataset, scorer, cache=cache, progress=progress)
    for m in methods:
        m.retriever = RegionRetriever(m.reranker, index, kb, mode=mode, k=k)


def _run_batch(
    batch: Sequence[EvalQuery],
    dataset: EvalDataset,
    methods: list[_Method],
    files: Sequence[IO[str]],
) -> None:
    pools = {q.id: dataset.candidates(q.id) for q in batch} if dataset.pools else {}
    full = methods[0]
    for method, fh in zip(methods, files):
        todo = [q for q in batch if q.id not in method.done]
        if not todo:
            continue
        decisions = [_oracle_decision(q) for q in todo] if method.oracle else None
        if method.retriever is not None:  # the method's own first stage
            results = method.retriever.retrieve_batch(
                [q.to_query() for q in todo], decisions=decisions
            )
        else:
            results = method.reranker.rerank_batch(
                [q.to_query() for q in todo], [pools[q.id] for q in todo], decisions=decisions
            )
        for query, result in zip(todo, results):
            if method is full:
                full_rank = first_positive_rank(result.ids, query.positives)
            else:
                full_rank = full.done[query.id]["first_positive_rank"]
                if method.retriever is not None and not query.positives & set(result.ids):
                    # Own first stage: the full-image rank (from the full method's pool)
                    # splits crop rates only where this method's pool holds a positive.
                    full_rank = None
            rec = _record(query, result, full_rank)
            method.done[query.id] = rec
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        fh.flush()


def run_eval(
    dataset: EvalDataset,
    methods: Mapping[str, Any],
    scorer: Any,
    out_dir: str | os.PathLike[str],
    *,
    ks: Sequence[int] = (1, 5, 10, 20),
    batch_size: int = 16,
    resume: bool = True,
    reranker_config: Any = None,
    n_examples: int = 12,
    progress: bool = True,
    limit: int | None = None,
    build_pools_if_missing: bool = False,
    pool_k: int = 20,
    retrieve: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate croppers on ``dataset`` and write the report under ``out_dir``.

    Args:
        dataset: Queries, KB and pools (see :mod:`region_rerank.eval.datasets`).
        methods: Method name -> a :class:`~region_rerank.croppers.base.QueryCropper`, or
            the string ``"oracle"`` (crop the ground-truth box; FULL without one). The
            ``"full"`` baseline is always added (the name is reserved for it).
        scorer: The bi-encoder or cross-encoder every method re-ranks with.
        out_dir: Output folder; nothing is written elsewhere.
        ks: Cut-offs for R@K, CondR@K and NDCG@K.
        batch_size: Queries per re-ranking batch (records are flushed after each).
        resume: Skip queries already recorded in ``out_dir``. ``False`` deletes earlier
            records and starts over.
        reranker_config: A :class:`~region_rerank.reranker.RerankerConfig` for every
            method (``top_n`` is forced to ``None``: metrics need the whole pool).
        n_examples: Queries shown in ``examples.png`` (0 for none).
        progress: Show a tqdm bar over queries.
        limit: Evaluate only the first ``limit`` queries; a later run without it adds the
            rest (the fingerprint covers the whole dataset).
        build_pools_if_missing: Build top-``pool_k`` pools with ``scorer`` when the dataset
            has none (written to ``out_dir/pools.jsonl``) instead of raising.
        pool_k: Pool size when pools are built (and of the first stage with ``retrieve``).
        retrieve: Instead of the dataset's pools, give each method its own first stage
            (:class:`~region_rerank.retrieval.RegionRetriever` over an index of the KB
            built with ``scorer``): ``"full"`` (search with the whole image), ``"view"``
            (with the method's own view) or ``"fused"``. ``coverage`` then measures each
            method's own pool, and R@K is end to end.

    Returns:
        Method name -> metrics (``"full"`` first), as written to ``metrics.json``.

    Raises:
        ConfigError: No pools, a bad method, or ``out_dir`` holds a different run.
    """
    from region_rerank._validate import check_range

    check_range("batch_size", batch_size, 1)
    if limit is not None:
        check_range("limit", limit, 1)
    specs = _check_methods(methods)
    if ORACLE in specs.values() and not any(q.box is not None for q in dataset.queries):
        logger.warning("the oracle method is asked for but no query has a ground-truth box")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from region_rerank.cache import EmbeddingCache
    from region_rerank.reranker import RerankerConfig

    cfg = replace(reranker_config or RerankerConfig(), top_n=None)
    cache = EmbeddingCache(cfg.cache_bytes)
    if retrieve is None:
        dataset = _with_pools(
            dataset, scorer, build_pools_if_missing, pool_k, out, progress, cache, resume
        )
    else:
        from region_rerank.retrieval import RETRIEVE_MODES

        check_choice("retrieve", retrieve, RETRIEVE_MODES)
    fingerprint = {
        "dataset": dataset.name,
        "num_queries": len(dataset),
        "scorer": str(getattr(scorer, "name", type(scorer).__name__)),
        "methods": sorted(specs),
    }
    identities = {n: d for n, d in ((n, _identity(m)) for n, m in specs.items()) if d}
    if identities:  # learned croppers: retrained weights under the same name are another run
        fingerprint["weights"] = identities
    if retrieve is not None:
        fingerprint["retrieve"] = [retrieve, pool_k]
    scoring = scoring_settings(cfg)
    if scoring:  # records scored another way are another run (the default adds nothing)
        fingerprint["reranker"] = scoring
    _check_fingerprint(out, fingerprint, resume)
    selected = list(dataset.queries[:limit] if limit is not None else dataset.queries)
    known = {q.id for q in dataset.queries}
    meths = _make_methods(specs, scorer, cfg, cache, out, known)
    if retrieve is not None:
        _attach_retrievers(meths, dataset, scorer, cache, retrieve, pool_k, progress)
    pending = [q for q in selected if any(q.id not in m.done for m in meths)]
    logger.info(
        "evaluating %d methods on %d queries (%d already recorded)",
        len(meths),
        len(selected),
        len(selected) - len(pending),
    )
    with ExitStack() as stack, progress_bar(len(pending), "eval", progress) as bar:
        files = [stack.enter_context(m.path.open("a", encoding="utf-8")) for m in meths]
        for i in range(0, len(pending), batch_size):
            batch = pending[i : i + batch_size]
            _run_batch(batch, dataset, meths, files)
            bar.update(len(batch))
    results: dict[str, dict[str, Any]] = {}
    for m in meths:
        recs = [m.done[q.id] for q in selected]
        metrics = compute_metrics([_to_eval_record(r) for r in recs], ks)
        metrics["num_fallback"] = sum(1 for r in recs if r.get("fallback"))
        metrics["sec_per_query"] = sum(float(r.get("seconds", 0.0)) for r in recs) / len(recs)
        results[m.name] = metrics
    from region_rerank.eval.report import write_report

    records = {m.name: m.done for m in meths}
    write_report(out, dataset.name, results, selected, records, n_examples=n_examples)
    return results


def scoring_settings(cfg: Any) -> dict[str, Any]:
    """The reranker settings that change the scores and differ from the defaults."""
    from region_rerank.reranker import RerankerConfig

    default = RerankerConfig()
    names = ["fusion", "crop_margin", "min_crop_size"]
    if cfg.fusion == "mix":
        names.append("mix_weight")
    if cfg.fusion == "blend":
        names += ["full_weight", "close_margin"]
        if cfg.close_margin > 0:
            names.append("close_full_weight")
    return {n: getattr(cfg, n) for n in names if getattr(cfg, n) != getattr(default, n)}


def read_records(
    out_dir: str | os.PathLike[str], method: str, queries: Sequence[EvalQuery]
) -> list[EvalRecord]:
    """The per-query records :func:`run_eval` wrote for ``method`` under ``out_dir``, in
    the order of ``queries`` (for metrics over subsets of the queries).

    Raises:
        ConfigError: A query of ``queries`` has no record for ``method``.
    """
    path = Path(out_dir) / "records" / f"{_file_stem(method)}.jsonl"
    done = _read_records(path, {q.id for q in queries})
    missing = [q.id for q in queries if q.id not in done]
    if missing:
        raise ConfigError(
            f"{path}: no record of method {method!r} for {len(missing)} queries "
            f"(e.g. {missing[:3]}); run the evaluation first"
        )
    return [_to_eval_record(done[q.id]) for q in queries]

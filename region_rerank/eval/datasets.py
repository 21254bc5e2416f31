"""The common in-memory evaluation dataset and the generic JSONL layout.

Every loader returns an :class:`EvalDataset`: queries (image, question, positive KB ids,
optional ground-truth box and question type), a knowledge base of :class:`KBEntry` and,
when available, retrieved pools per query.

Generic layout (one folder, UTF-8 JSON Lines, one object per line):

- ``queries.jsonl``: ``{"id": str, "image": str, "question": str, "positives": [kb ids],
  "box": [x1, y1, x2, y2] | null, "question_type": str | null, ...}``. ``box`` is in
  pixels of the original image (left, top, right, bottom). Extra fields go to
  ``EvalQuery.metadata``.
- ``kb.jsonl``: ``{"id": str, "text": str | null, "images": [str], ...}``. Extra fields go
  to ``KBEntry.metadata``.
- ``pools.jsonl`` (optional): ``{"query_id": str, "candidates": [{"id": kb id,
  "score": number}, ...]}`` in retrieval order.

Image strings starting with ``http://``, ``https://``, ``file://`` or ``data:`` are kept
verbatim; other strings are file paths, relative ones resolved against the folder.
Malformed rows raise :class:`DatasetFormatError` (file + 1-based line + reason), or with
``lenient=True`` are skipped, counted in :attr:`EvalDataset.skipped` and logged once.
E-VQA and InfoSeek loaders live in :mod:`region_rerank.eval.datasets_evqa` and
:mod:`region_rerank.eval.datasets_infoseek`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from region_rerank.errors import ConfigError
from region_rerank.eval._rows import (
    URL_PREFIXES,
    DatasetFormatError,
    RowIssues,
    RowProblem,
    get_box,
    get_id,
    get_number,
    get_str,
    get_str_list,
    iter_jsonl,
    req_str,
    require_object,
    resolve_image,
)
from region_rerank.eval._schema import EvalDataset, EvalQuery, KBEntry, Pool
from region_rerank.types import ImageLike

__all__ = [
    "DatasetFormatError",
    "KBEntry",
    "EvalQuery",
    "EvalDataset",
    "Pool",
    "load_jsonl_dataset",
    "load_kb_jsonl",
    "load_pools_jsonl",
    "write_jsonl_dataset",
]

logger = logging.getLogger(__name__)

_QUERY_FIELDS = ("id", "image", "question", "positives", "box", "question_type")
_KB_FIELDS = ("id", "text", "images")


def _parse_query(obj: dict[str, Any], folder: Path, check_images: bool) -> EvalQuery:
    qid = get_id(obj)
    image = req_str(obj, "image")
    if not image:
        raise RowProblem("field 'image' must be a non-empty string")
    resolved = resolve_image(image, folder)
    if check_images and isinstance(resolved, Path) and not resolved.is_file():
        raise RowProblem(f"image file not found: {resolved}")
    question = req_str(obj, "question")
    positives = get_str_list(obj, "positives")
    metadata = {k: v for k, v in obj.items() if k not in _QUERY_FIELDS}
    return EvalQuery(
        id=qid,
        image=resolved,
        question=question,
        positives=frozenset(positives),
        box=get_box(obj),
        question_type=get_str(obj, "question_type", required=False),
        metadata=metadata,
    )


def _parse_kb(obj: dict[str, Any], folder: Path) -> KBEntry:
    kid = get_id(obj)
    text = get_str(obj, "text", required=False)
    images = tuple(resolve_image(s, folder) for s in get_str_list(obj, "images", required=False))
    metadata = {k: v for k, v in obj.items() if k not in _KB_FIELDS}
    return KBEntry(id=kid, text=text, images=images, metadata=metadata)


def _parse_pool(obj: dict[str, Any], kb: Mapping[str, KBEntry]) -> tuple[str, Pool]:
    qid = get_id(obj, "query_id")
    cands = obj.get("candidates")
    if not isinstance(cands, list):
        raise RowProblem("field 'candidates' must be a list of {id, score} objects")
    pool = []
    for j, cand in enumerate(cands):
        if not isinstance(cand, dict):
            raise RowProblem(f"candidates[{j}] must be an object, got {type(cand).__name__}")
        cid = get_id(cand)
        if cid not in kb:
            raise RowProblem(f"candidates[{j}] names unknown KB id {cid!r}")
        pool.append((cid, get_number(cand.get("score"), f"candidates[{j}].score")))
    return qid, tuple(pool)


def load_pools_jsonl(
    path: str | os.PathLike[str],
    kb: Mapping[str, KBEntry],
    query_ids: set[str] | frozenset[str],
    *,
    lenient: bool = False,
    issues: RowIssues | None = None,
) -> dict[str, Pool]:
    """Read a ``pools.jsonl`` file, checking that every query and KB id is known.

    Args:
        path: The pools file (``{"query_id", "candidates": [{"id", "score"}]}`` per line).
        kb: The knowledge base the pool ids must belong to.
        query_ids: Known query ids.
        lenient: Skip and count malformed rows instead of raising (ignored when
            ``issues`` is given).
        issues: A loader's shared collector, so skipped rows add up across files.

    Returns:
        Query id -> pool, in file order.

    Raises:
        DatasetFormatError: A malformed row in strict mode (file + line + reason).
    """
    own = issues is None
    collector = RowIssues(lenient) if issues is None else issues
    path = Path(path)
    pools: dict[str, Pool] = {}
    lines: dict[str, int] = {}
    for line_no, value in iter_jsonl(path):
        try:
            if isinstance(value, RowProblem):
                raise value
            qid, pool = _parse_pool(require_object(value), kb)
            if qid not in query_ids:
                raise RowProblem(f"pool for unknown query id {qid!r}")
            if qid in pools:
                raise RowProblem(f"second pool for query {qid!r} (first on line {lines[qid]})")
        except RowProblem as exc:
            collector.report(DatasetFormatError(path, line_no, str(exc)))
            continue
        pools[qid] = pool
        lines[qid] = line_no
    if own:
        collector.log_summary(str(path))
    return pools


def warn_unknown_positives(queries: tuple[EvalQuery, ...], kb: Mapping[str, KBEntry]) -> None:
    """Log how many queries have a positive that the KB lacks (they can never be found)."""
    bad = [q.id for q in queries if q.positives and not any(p in kb for p in q.positives)]
    if bad:
        logger.warning(
            "%d query(ies) have no positive in the KB (they lower coverage); e.g. %s",
            len(bad),
            bad[:5],
        )


_Row = TypeVar("_Row", KBEntry, EvalQuery)


def _read_rows(
    path: Path, parse: Callable[[dict[str, Any]], _Row], what: str, issues: RowIssues
) -> list[_Row]:
    """The rows of a JSONL file, parsed; malformed rows and repeated ids are reported."""
    rows: list[_Row] = []
    lines: dict[str, int] = {}
    for line_no, value in iter_jsonl(path):
        try:
            if isinstance(value, RowProblem):
                raise value
            row = parse(require_object(value))
            if row.id in lines:
                raise RowProblem(f"duplicate {what} id {row.id!r} (first on line {lines[row.id]})")
        except RowProblem as exc:
            issues.report(DatasetFormatError(path, line_no, str(exc)))
            continue
        rows.append(row)
        lines[row.id] = line_no
    return rows


def _read_kb(kb_file: Path, issues: RowIssues) -> dict[str, KBEntry]:
    rows = _read_rows(kb_file, lambda obj: _parse_kb(obj, kb_file.parent), "KB", issues)
    return {e.id: e for e in rows}


def load_kb_jsonl(path: str | os.PathLike[str], *, lenient: bool = False) -> dict[str, KBEntry]:
    """Read a ``kb.jsonl`` of the generic layout into ``id -> KBEntry`` (image paths
    relative to the file's folder).

    Raises:
        FileNotFoundError: The file is missing.
        DatasetFormatError: A malformed row or a repeated id (strict mode).
    """
    kb_file = Path(path)
    if not kb_file.is_file():
        raise FileNotFoundError(f"missing {kb_file}")
    issues = RowIssues(lenient)
    kb = _read_kb(kb_file, issues)
    issues.log_summary(str(kb_file))
    return kb


def load_jsonl_dataset(
    folder: str | os.PathLike[str],
    *,
    name: str | None = None,
    lenient: bool = False,
    check_images: bool = False,
    kb_path: str | os.PathLike[str] | None = None,
) -> EvalDataset:
    """Load the generic layout (``queries.jsonl``, ``kb.jsonl``, optional ``pools.jsonl``).

    Args:
        folder: The dataset folder.
        name: Dataset name (default: the folder name).
        kb_path: Read the KB from this file instead of ``{folder}/kb.jsonl`` (its image
            paths are relative to the file's folder), e.g. a KB shared by several splits.
        lenient: Skip and count malformed rows instead of raising.
        check_images: Treat a query image path that is not an existing file as malformed.

    Returns:
        The dataset; ``pools`` is empty when there is no ``pools.jsonl``.

    Raises:
        FileNotFoundError: ``queries.jsonl`` or ``kb.jsonl`` is missing.
        DatasetFormatError: A malformed row (strict mode), naming file and line.
    """
    root = Path(folder)
    kb_file = Path(kb_path) if kb_path is not None else root / "kb.jsonl"
    for required in (root / "queries.jsonl", kb_file):
        if not required.is_file():
            raise FileNotFoundError(
                f"missing {required}; the generic layout needs queries.jsonl, "
                "kb.jsonl and optionally pools.jsonl"
            )
    issues = RowIssues(lenient)
    kb = _read_kb(kb_file, issues)
    q_path = root / "queries.jsonl"
    queries = _read_rows(q_path, lambda obj: _parse_query(obj, root, check_images), "query", issues)
    pools: dict[str, Pool] = {}
    if (root / "pools.jsonl").is_file():
        known = frozenset(q.id for q in queries)
        pools = load_pools_jsonl(root / "pools.jsonl", kb, known, issues=issues)
    issues.log_summary(str(root))
    warn_unknown_positives(tuple(queries), kb)
    return EvalDataset(
        name=name or root.name,
        queries=tuple(queries),
        kb=kb,
        pools=pools,
        skipped=issues.skipped,
    )


class _ImageWriter:
    """Turns an image value into a JSON string, saving in-memory images as PNG files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))

    def __call__(self, image: ImageLike, stem: str) -> str:
        if isinstance(image, str) and image.lower().startswith(URL_PREFIXES):
            return image
        if isinstance(image, (str, Path)):
            path = Path(os.path.abspath(image))
            try:
                return path.relative_to(self.root).as_posix()
            except ValueError:
                return str(path)
        from region_rerank.images import load_image

        rel = Path("images") / f"{stem}.png"
        (self.root / rel.parent).mkdir(parents=True, exist_ok=True)
        load_image(image).save(self.root / rel)
        return rel.as_posix()


def _extra(metadata: Mapping[str, Any], reserved: tuple[str, ...], owner: str) -> dict[str, Any]:
    clash = sorted(set(metadata) & set(reserved))
    if clash:
        raise ConfigError(f"{owner}: metadata keys {clash} clash with layout fields {reserved}")
    return dict(metadata)


def _dump(obj: dict[str, Any], owner: str) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{owner} cannot be written as JSON: {exc}") from exc


def write_jsonl_dataset(dataset: EvalDataset, folder: str | os.PathLike[str]) -> Path:
    """Write ``dataset`` in the generic layout, loadable by :func:`load_jsonl_dataset`.

    Paths inside ``folder`` are written relative to it, other paths absolute, URLs verbatim;
    in-memory images (PIL, bytes, arrays, tensors) are saved as PNG under ``images/``.
    Metadata is written as extra top-level fields (it must be JSON-serialisable).
    ``pools.jsonl`` is written only when the dataset has pools. Existing files are replaced.

    Args:
        dataset: The dataset to write.
        folder: Target folder (created if needed).

    Returns:
        The folder path.

    Raises:
        ValueError: Metadata that is not JSON-serialisable or clashes with a layout field.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    image_str = _ImageWriter(root)
    kb_lines = []
    for i, entry in enumerate(dataset.kb.values()):
        row = _extra(entry.metadata, _KB_FIELDS, f"KB entry {entry.id!r}")
        row.update(
            id=entry.id,
            text=entry.text,
            images=[image_str(img, f"kb_{i:06d}_{j}") for j, img in enumerate(entry.images)],
        )
        kb_lines.append(_dump(row, f"KB entry {entry.id!r}"))
    q_lines = []
    for i, q in enumerate(dataset.queries):
        row = _extra(q.metadata, _QUERY_FIELDS, f"query {q.id!r}")
        row.update(
            id=q.id,
            image=image_str(q.image, f"query_{i:06d}"),
            question=q.question,
            positives=sorted(q.positives),
            box=list(q.box.as_tuple()) if q.box is not None else None,
            question_type=q.question_type,
        )
        q_lines.append(_dump(row, f"query {q.id!r}"))
    (root / "kb.jsonl").write_text("".join(s + "\n" for s in kb_lines), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(s + "\n" for s in q_lines), encoding="utf-8")
    pools_path = root / "pools.jsonl"
    if dataset.pools:
        rows = [
            json.dumps(
                {"query_id": qid, "candidates": [{"id": c, "score": s} for c, s in pool]},
                ensure_ascii=False,
            )
            for qid, pool in dataset.pools.items()
        ]
        pools_path.write_text("".join(s + "\n" for s in rows), encoding="utf-8")
    elif pools_path.exists():
        pools_path.unlink()
    logger.info("wrote %d queries, %d KB entries to %s", len(dataset), len(dataset.kb), root)
    return root

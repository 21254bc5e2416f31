"""Encyclopedic-VQA loader and the E-VQA CSV / KB formats (METHOD.md section 6).

**E-VQA**: a CSV with the columns ``question``, ``answer`` (``|``-separated),
``dataset_image_ids`` (``|``-separated; the first is used), ``dataset_name``,
``question_type``, ``wikipedia_url`` (the KB key and positive; ``|``-separated values give
several positives), plus optional ``wikipedia_title``, ``evidence``,
``evidence_section_id``, ``encyclopedic_vqa_split`` and any other column, all kept in
``EvalQuery.metadata``. Rows whose ``question_type`` is in ``drop_question_types`` (default
``2_hop``, which needs two retrieval hops) are dropped and counted in
``EvalDataset.dropped``. The query image is ``image_dir / image_pattern.format(image_id=...,
dataset_name=...)`` (default ``{image_id}.jpg``) or what a callable returns. Query ids come
from an ``id`` column when present, else ``{id_prefix}{n}`` with ``n`` the 0-based data row.

**KB** (E-VQA schema): one JSON object mapping url -> ``{"title", "section_titles",
"section_texts", "image_urls", ...}``. Entry text = title + the first sections, cut at
``text_max_chars`` (~500) characters on a word boundary.

InfoSeek converts to this layout: see :mod:`region_rerank.eval.datasets_infoseek`.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from region_rerank.eval._rows import (
    DatasetFormatError,
    RowIssues,
    RowProblem,
    get_str_list,
    req_str,
    require_object,
)
from region_rerank.eval.datasets import (
    EvalDataset,
    EvalQuery,
    KBEntry,
    Pool,
    load_pools_jsonl,
    warn_unknown_positives,
)
from region_rerank.types import ImageLike

__all__ = [
    "EVQA_COLUMNS",
    "evqa_entry_text",
    "load_evqa_kb",
    "load_evqa",
    "write_evqa_csv",
]

logger = logging.getLogger("region_rerank.eval.datasets")

#: Column order of the E-VQA CSV (the first six are required by :func:`load_evqa`).
EVQA_COLUMNS: tuple[str, ...] = (
    "question",
    "answer",
    "dataset_image_ids",
    "dataset_name",
    "question_type",
    "wikipedia_url",
    "wikipedia_title",
    "evidence",
    "evidence_section_id",
    "encyclopedic_vqa_split",
)
_REQUIRED = EVQA_COLUMNS[:6]
_CORE = {"id", "question", "answer", "question_type", "wikipedia_url"}

#: A file path.
PathLike = str | os.PathLike[str]
#: ``str.format`` pattern under the image folder, or ``(image_id, dataset_name) -> image``.
ImagePattern = str | Callable[[str, str], ImageLike]
#: ``"urls"``, ``"none"`` or ``(kb_key, raw_entry) -> images``.
KBImages = Literal["urls", "none"] | Callable[[str, Mapping[str, Any]], Sequence[ImageLike]]


def evqa_entry_text(title: str, section_texts: Sequence[str], max_chars: int = 500) -> str:
    """Title + first sections joined by newlines, cut at ``max_chars`` on a word boundary."""
    parts = [p.strip() for p in (title, *section_texts) if p and p.strip()]
    text = "\n".join(parts)
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space >= int(max_chars * 0.8):
        cut = cut[:space]
    return cut.rstrip()


def _kb_entry(key: str, value: Any, max_chars: int, kb_images: KBImages) -> KBEntry:
    obj = require_object(value)
    title = req_str(obj, "title")
    sections = get_str_list(obj, "section_texts", required=False)
    if kb_images == "urls":
        images: Sequence[ImageLike] = get_str_list(obj, "image_urls", required=False)
    elif kb_images == "none":
        images = ()
    else:
        images = kb_images(key, obj)
    meta = {"title": title, "url": obj.get("url", key)}
    return KBEntry(key, evqa_entry_text(title, sections, max_chars), tuple(images), meta)


def read_kb(
    path: Path, max_chars: int, kb_images: KBImages, issues: RowIssues
) -> dict[str, KBEntry]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(path, exc.lineno, f"invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(path, None, f"not valid UTF-8 ({exc.reason})") from None
    if not isinstance(data, dict):
        raise DatasetFormatError(path, None, "the KB must be one JSON object url -> entry")
    kb: dict[str, KBEntry] = {}
    for key, value in data.items():
        try:
            kb[key] = _kb_entry(key, value, max_chars, kb_images)
        except RowProblem as exc:
            issues.report(DatasetFormatError(path, None, f"KB entry {key!r}: {exc}"))
    return kb


def load_evqa_kb(
    path: PathLike,
    *,
    text_max_chars: int = 500,
    kb_images: KBImages = "urls",
    lenient: bool = False,
) -> dict[str, KBEntry]:
    """Load a KB in the E-VQA schema.

    Args:
        path: The KB JSON file (url -> entry).
        text_max_chars: Cut of the entry text (title + first sections).
        kb_images: ``"urls"`` keeps ``image_urls`` as given (loading them needs
            ``ImageLoadOptions(allow_urls=True)``), ``"none"`` keeps no image, or a callable
            ``(key, entry) -> images`` that maps entries to local files.
        lenient: Skip and count malformed entries instead of raising.

    Raises:
        DatasetFormatError: Invalid JSON (with its line) or a malformed entry (strict).
    """
    issues = RowIssues(lenient)
    kb = read_kb(Path(path), text_max_chars, kb_images, issues)
    issues.log_summary(str(path))
    return kb


def _image_for(pattern: ImagePattern, image_dir: Path, image_id: str, dataset_name: str) -> Any:
    if callable(pattern):
        return pattern(image_id, dataset_name)
    return image_dir / pattern.format(image_id=image_id, dataset_name=dataset_name)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split("|") if v.strip()]


def _evqa_query(
    row: dict[str, Any], index: int, image_dir: Path, pattern: ImagePattern, id_prefix: str
) -> EvalQuery:
    if None in row or any(v is None for v in row.values()):
        raise RowProblem("row has a different number of fields than the header")
    question = req_str(row, "question").strip()
    if not question:
        raise RowProblem("empty 'question'")
    image_ids = _split(req_str(row, "dataset_image_ids"))
    if not image_ids:
        raise RowProblem("empty 'dataset_image_ids'")
    positives = _split(req_str(row, "wikipedia_url"))
    if not positives:
        raise RowProblem("empty 'wikipedia_url' (the positive KB key)")
    dataset_name = req_str(row, "dataset_name")
    meta = {k: v for k, v in row.items() if k not in _CORE}
    meta["answers"] = _split(req_str(row, "answer"))
    meta["image_id"] = image_ids[0]
    return EvalQuery(
        id=(row.get("id") or "").strip() or f"{id_prefix}{index}",
        image=_image_for(pattern, image_dir, image_ids[0], dataset_name),
        question=question,
        positives=frozenset(positives),
        question_type=(row.get("question_type") or "").strip() or None,
        metadata=meta,
    )


def _iter_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        try:
            header = reader.fieldnames
            if not header:
                raise DatasetFormatError(path, 1, "empty file (no header row)")
            missing = [c for c in _REQUIRED if c not in header]
            if missing:
                raise DatasetFormatError(path, 1, f"missing column(s) {missing}; got {header}")
            start = reader.line_num + 1
            for row in reader:
                yield start, row
                start = reader.line_num + 1
        except UnicodeDecodeError as exc:
            raise DatasetFormatError(path, None, f"not valid UTF-8 ({exc.reason})") from None


def build_from_rows(
    name: str,
    source: Path,
    rows: Iterable[tuple[int, dict[str, Any]]],
    kb: Mapping[str, KBEntry],
    *,
    image_dir: Path,
    image_pattern: ImagePattern,
    drop_question_types: Sequence[str],
    id_prefix: str,
    check_images: bool,
    pools_path: PathLike | None,
    issues: RowIssues,
) -> EvalDataset:
    queries: list[EvalQuery] = []
    lines: dict[str, int] = {}
    dropped: Counter[str] = Counter()
    for index, (line_no, row) in enumerate(rows):
        qtype = (row.get("question_type") or "").strip()
        if qtype in drop_question_types:
            dropped[qtype] += 1
            continue
        try:
            query = _evqa_query(row, index, image_dir, image_pattern, id_prefix)
            if query.id in lines:
                raise RowProblem(
                    f"duplicate query id {query.id!r} (first on line {lines[query.id]})"
                )
            if check_images and isinstance(query.image, Path) and not query.image.is_file():
                raise RowProblem(f"image file not found: {query.image}")
        except RowProblem as exc:
            issues.report(DatasetFormatError(source, line_no, str(exc)))
            continue
        queries.append(query)
        lines[query.id] = line_no
    if dropped:
        logger.info("%s: dropped %s", source, dict(dropped))
    pools: dict[str, Pool] = {}
    if pools_path is not None:
        pools = load_pools_jsonl(pools_path, kb, frozenset(lines), issues=issues)
    issues.log_summary(str(source))
    warn_unknown_positives(tuple(queries), kb)
    return EvalDataset(
        name=name,
        queries=tuple(queries),
        kb=kb,
        pools=pools,
        skipped=issues.skipped,
        dropped=dict(dropped),
    )


def load_evqa(
    csv_path: PathLike,
    kb_path: PathLike,
    image_dir: PathLike,
    *,
    image_pattern: ImagePattern = "{image_id}.jpg",
    drop_question_types: Sequence[str] = ("2_hop",),
    text_max_chars: int = 500,
    kb_images: KBImages = "urls",
    pools_path: PathLike | None = None,
    id_prefix: str = "evqa-",
    check_images: bool = False,
    lenient: bool = False,
    name: str = "evqa",
) -> EvalDataset:
    """Load Encyclopedic-VQA (see the module docstring for the layout).

    Args:
        csv_path: The question CSV (e.g. ``test.csv``).
        kb_path: The KB JSON in the E-VQA schema.
        image_dir: Folder of the query images.
        image_pattern: ``str.format`` pattern under ``image_dir`` with ``{image_id}`` and
            ``{dataset_name}``, or a callable ``(image_id, dataset_name) -> image``.
        drop_question_types: Question types left out (counted in ``dataset.dropped``).
        text_max_chars: Cut of the KB entry text.
        kb_images: KB image policy, see :func:`load_evqa_kb`.
        pools_path: Optional ``pools.jsonl`` (generic layout) with retrieved pools.
        id_prefix: Prefix of generated query ids when the CSV has no ``id`` column.
        check_images: Treat a missing query image file as a malformed row.
        lenient: Skip and count malformed rows and KB entries instead of raising.
        name: Dataset name.

    Raises:
        DatasetFormatError: Missing columns, or a malformed row / entry in strict mode.
    """
    issues = RowIssues(lenient)
    kb = read_kb(Path(kb_path), text_max_chars, kb_images, issues)
    return build_from_rows(
        name,
        Path(csv_path),
        _iter_csv(Path(csv_path)),
        kb,
        image_dir=Path(image_dir),
        image_pattern=image_pattern,
        drop_question_types=tuple(drop_question_types),
        id_prefix=id_prefix,
        check_images=check_images,
        pools_path=pools_path,
        issues=issues,
    )


def write_evqa_csv(rows: Iterable[Mapping[str, str]], path: PathLike) -> Path:
    """Write rows in the E-VQA CSV layout (:data:`EVQA_COLUMNS` first, extras after)."""
    rows = list(rows)
    columns = list(EVQA_COLUMNS)
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    out = Path(path)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return out

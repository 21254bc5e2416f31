"""Encyclopedic-VQA loader: the released question CSVs, KB JSON and image layouts.

**CSV** (``train.csv`` / ``val.csv`` / ``test.csv``; columns are read by name, any order):

- ``question``; ``answer``: alternatives from several annotators joined by ``|``; in a
  ``multi_answer`` row each alternative lists its parts joined by ``&&``
  (``metadata["answers"]`` holds the alternatives, ``metadata["answer_parts"]`` the parts).
- ``dataset_image_ids``: up to five ids joined by ``|`` (the first is the query image, all
  are in ``metadata["image_ids"]``); ``dataset_name``: ``landmarks`` (GLDv2) or
  ``inaturalist`` (iNaturalist 2021); the files are found by
  :class:`~region_rerank.eval.image_layouts.EVQAImageLayout`.
- ``question_type``: ``templated``, ``automatic``, ``multi_answer`` or ``2_hop``.
- ``wikipedia_url``: the KB key of the positive. Only ``2_hop`` rows hold two URLs (joined by
  ``|``): the entity in the image, then the second hop. The first is the positive, both
  are in ``metadata["hop_urls"]``; two URLs on another row is a malformed row.
- every other column (``wikipedia_title``, ``evidence``, ``evidence_section_id``...) is kept
  in ``EvalQuery.metadata`` as text.

Query ids are ``E-VQA_{i}`` with ``i`` the 0-based index of the row among the rows kept by the
question-type filter (malformed rows still take their number), exactly as EchoSight and
OMGM key their published pools, so those pools can be imported
(:mod:`region_rerank.eval.pool_import`). An ``id`` column wins when present; rows with
``dataset_name = infoseek`` (the E-VQA-format InfoSeek CSVs of EchoSight / OMGM) use their
``data_id`` column.

**KB**: see :mod:`region_rerank.eval.kb_readers` (streamed, text assembled as the reference
code does by default, :mod:`region_rerank.eval.kb_text`).
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from region_rerank.eval._rows import DatasetFormatError, RowIssues, RowProblem, req_str
from region_rerank.eval._schema import EvalDataset, EvalQuery, KBEntry, Pool
from region_rerank.eval.datasets import load_pools_jsonl, warn_unknown_positives
from region_rerank.eval.image_layouts import EVQAImageLayout, load_id_map
from region_rerank.eval.kb_readers import KBFormat, KBImages, load_kb
from region_rerank.eval.kb_text import REFERENCE_TEXT, KBTextConfig
from region_rerank.types import ImageLike

__all__ = [
    "EVQA_COLUMNS",
    "RowCounts",
    "iter_evqa_queries",
    "load_evqa",
    "load_evqa_kb",
    "write_evqa_csv",
]

logger = logging.getLogger("region_rerank.eval.datasets")

#: The E-VQA CSV fields, in the order of the official README.
EVQA_COLUMNS: tuple[str, ...] = (
    "question",
    "answer",
    "dataset_image_ids",
    "dataset_name",
    "dataset_category_id",
    "question_type",
    "wikipedia_url",
    "wikipedia_title",
    "evidence",
    "evidence_section_id",
    "evidence_section_title",
    "encyclopedic_vqa_split",
    "question_original",
    "wikipedia_url_used_in_train",
)
_REQUIRED = (
    "question",
    "answer",
    "dataset_image_ids",
    "dataset_name",
    "question_type",
    "wikipedia_url",
)
_CORE = {"id", "question", "answer", "question_type", "wikipedia_url"}

#: A file path.
PathLike = str | os.PathLike[str]
#: ``str.format`` pattern under the image folder, or ``(image_id, dataset_name) -> image``.
ImagePattern = str | Callable[[str, str], ImageLike]


@dataclass
class RowCounts:
    """What a loader did with the rows (filled while iterating).

    Attributes:
        rows: Data rows read.
        kept: Queries produced.
        dropped: Rows left out on purpose, by reason.
        images_found: Kept queries whose image file exists (local paths only).
        images_missing: Kept queries whose image file does not exist.
        missing_examples: A few missing image paths.
    """

    rows: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    images_found: int = 0
    images_missing: int = 0
    missing_examples: list[str] = field(default_factory=list)

    def image(self, image: ImageLike) -> bool:
        """Count ``image``; return whether it is an existing file (non-paths count as found)."""
        exists = not isinstance(image, Path) or image.is_file()
        if exists:
            self.images_found += 1
        else:
            self.images_missing += 1
            if len(self.missing_examples) < 5:
                self.missing_examples.append(str(image))
        return exists


def _split(value: str, sep: str) -> list[str]:
    return [v.strip() for v in value.split(sep) if v.strip()]


class _RowReader:
    """Turns one CSV row into an :class:`EvalQuery` (raises :class:`RowProblem`)."""

    def __init__(
        self,
        image_dir: Path,
        id_map: Mapping[str, str] | None,
        pattern: ImagePattern | None,
        check_images: bool,
        counts: RowCounts,
    ) -> None:
        self.image_dir = image_dir
        self.layout = EVQAImageLayout(image_dir, id_map)
        self.pattern = pattern
        self.check_images = check_images
        self.counts = counts

    def _image(self, image_id: str, dataset_name: str) -> ImageLike:
        if self.pattern is None:
            image: ImageLike = self.layout.resolve(image_id, dataset_name)
        elif callable(self.pattern):
            image = self.pattern(image_id, dataset_name)
        else:
            image = self.image_dir / self.pattern.format(
                image_id=image_id, dataset_name=dataset_name
            )
        if not self.counts.image(image) and self.check_images:
            hint = self.layout.missing_hint(image_id, dataset_name) if self.pattern is None else ""
            raise RowProblem(f"image file not found: {image}{hint}")
        return image

    def query(self, row: dict[str, Any], qid: str, qtype: str) -> EvalQuery:
        if None in row or any(v is None for v in row.values()):
            raise RowProblem("row has a different number of fields than the header")
        question = req_str(row, "question").strip()
        if not question:
            raise RowProblem("empty 'question'")
        image_ids = _split(req_str(row, "dataset_image_ids"), "|")
        if not image_ids:
            raise RowProblem("empty 'dataset_image_ids'")
        urls = _split(req_str(row, "wikipedia_url"), "|")
        if not urls:
            raise RowProblem("empty 'wikipedia_url' (the positive KB key)")
        meta = {k: v for k, v in row.items() if k not in _CORE}
        if len(urls) > 1:
            if qtype != "2_hop":
                raise RowProblem(
                    f"'wikipedia_url' holds {len(urls)} '|'-separated URLs on a {qtype!r} row; "
                    "only 2_hop rows carry a URL chain"
                )
            meta["hop_urls"] = urls
        answers = _split(req_str(row, "answer"), "|")
        meta["answers"] = answers
        if qtype == "multi_answer":
            meta["answer_parts"] = [_split(a, "&&") for a in answers]
        meta["image_id"], meta["image_ids"] = image_ids[0], image_ids
        dataset_name = req_str(row, "dataset_name").strip()
        return EvalQuery(
            id=qid,
            image=self._image(image_ids[0], dataset_name),
            question=question,
            positives=frozenset(urls[:1]),
            question_type=qtype or None,
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


def _query_id(row: dict[str, Any], index: int, id_prefix: str) -> str:
    own = (row.get("id") or "").strip()
    if own:
        return own
    if (row.get("dataset_name") or "").strip() == "infoseek" and (row.get("data_id") or "").strip():
        return str(row["data_id"]).strip()
    return f"{id_prefix}{index}"


def iter_evqa_queries(
    csv_path: PathLike,
    image_dir: PathLike,
    *,
    id_map: PathLike | Mapping[str, str] | None = None,
    image_pattern: ImagePattern | None = None,
    drop_question_types: Sequence[str] = ("2_hop",),
    id_prefix: str = "E-VQA_",
    check_images: bool = False,
    issues: RowIssues | None = None,
    counts: RowCounts | None = None,
) -> Iterator[EvalQuery]:
    """Yield the queries of an E-VQA CSV one row at a time (arguments as :func:`load_evqa`).

    Args:
        issues: Collector of malformed rows (default: strict).
        counts: Filled with what happened to the rows (kept, dropped, images found).

    Raises:
        DatasetFormatError: Missing columns, a repeated query id, or a malformed row in
            strict mode (file + line + reason).
    """
    source = Path(csv_path)
    collector = issues if issues is not None else RowIssues(False)
    stats = counts if counts is not None else RowCounts()
    mapping = load_id_map(id_map) if isinstance(id_map, (str, os.PathLike)) else id_map
    reader = _RowReader(Path(image_dir), mapping, image_pattern, check_images, stats)
    drop = set(drop_question_types)
    lines: dict[str, int] = {}
    index = 0
    for line_no, row in _iter_csv(source):
        stats.rows += 1
        qtype = (row.get("question_type") or "").strip()
        if qtype in drop:
            stats.dropped[qtype] += 1
            continue
        qid = _query_id(row, index, id_prefix)
        index += 1
        try:
            if qid in lines:
                raise RowProblem(f"duplicate query id {qid!r} (first on line {lines[qid]})")
            query = reader.query(row, qid, qtype)
        except RowProblem as exc:
            collector.report(DatasetFormatError(source, line_no, str(exc)))
            continue
        lines[qid] = line_no
        stats.kept += 1
        yield query


def load_evqa_kb(
    path: PathLike,
    *,
    text: KBTextConfig = REFERENCE_TEXT,
    kb_images: KBImages = "urls",
    lenient: bool = False,
    progress: bool = False,
) -> dict[str, KBEntry]:
    """Load a KB in the E-VQA schema (streamed; see :mod:`region_rerank.eval.kb_readers`).

    Args:
        path: The KB JSON (url -> entry), plain or ``.gz``.
        text: How entry text is assembled (default: the reference assembly).
        kb_images: ``"urls"`` keeps ``image_urls`` (loading them needs
            ``ImageLoadOptions(allow_urls=True)``), ``"none"`` keeps none, or a callable
            ``(key, entry) -> images`` that maps entries to local files.
        lenient: Skip and count malformed entries instead of raising.
        progress: Show a progress bar over the bytes read.

    Raises:
        DatasetFormatError: Invalid JSON (with its line) or a malformed entry (strict).
    """
    return load_kb(
        path, kb_format="evqa", text=text, kb_images=kb_images, lenient=lenient, progress=progress
    )


def assemble_dataset(
    name: str,
    queries: Iterable[EvalQuery],
    kb: Mapping[str, KBEntry],
    *,
    dropped: Mapping[str, int],
    pools_path: PathLike | None,
    issues: RowIssues,
    source: str,
) -> EvalDataset:
    """Collect queries, read the optional pools file and build the dataset."""
    queries = tuple(queries)
    pools: dict[str, Pool] = {}
    if pools_path is not None:
        ids = frozenset(q.id for q in queries)
        pools = load_pools_jsonl(pools_path, kb, ids, issues=issues)
    if dropped:
        logger.info("%s: dropped %s", source, dict(dropped))
    issues.log_summary(source)
    warn_unknown_positives(queries, kb)
    return EvalDataset(
        name=name, queries=queries, kb=kb, pools=pools, skipped=issues.skipped, dropped=dropped
    )


def load_evqa(
    csv_path: PathLike,
    kb_path: PathLike,
    image_dir: PathLike,
    *,
    id_map: PathLike | Mapping[str, str] | None = None,
    image_pattern: ImagePattern | None = None,
    drop_question_types: Sequence[str] = ("2_hop",),
    text: KBTextConfig = REFERENCE_TEXT,
    kb_images: KBImages = "urls",
    kb_format: KBFormat = "evqa",
    pools_path: PathLike | None = None,
    id_prefix: str = "E-VQA_",
    check_images: bool = False,
    lenient: bool = False,
    name: str = "evqa",
    progress: bool = False,
) -> EvalDataset:
    """Load Encyclopedic-VQA as released (see the module docstring for the layout).

    Args:
        csv_path: The question CSV (e.g. ``test.csv``).
        kb_path: The KB (``encyclopedic_kb_wiki.json``, plain or ``.gz``).
        image_dir: Folder of the query images (GLDv2 ``landmarks/``, iNaturalist
            ``inaturalist/``; see :class:`~region_rerank.eval.image_layouts.EVQAImageLayout`).
        id_map: iNaturalist id -> file name (a file for
            :func:`~region_rerank.eval.image_layouts.load_id_map` or a mapping).
        image_pattern: Instead of the released layouts, a ``str.format`` pattern under
            ``image_dir`` with ``{image_id}`` and ``{dataset_name}``, or a callable
            ``(image_id, dataset_name) -> image``.
        drop_question_types: Question types left out (counted in ``dataset.dropped``;
            ``2_hop`` needs two retrieval hops).
        text: How KB entry text is assembled.
        kb_images: KB image policy, see :func:`load_evqa_kb`.
        kb_format: ``"evqa"`` (default), ``"wiki6m"`` or ``"auto"``.
        pools_path: Optional ``pools.jsonl`` (generic layout) with retrieved pools.
        id_prefix: Prefix of the generated query ids.
        check_images: Treat a missing query image file as a malformed row.
        lenient: Skip and count malformed rows and KB entries instead of raising.
        name: Dataset name.
        progress: Progress bar while the KB is read.

    Raises:
        DatasetFormatError: Missing columns, or a malformed row / entry in strict mode.
    """
    issues = RowIssues(lenient)
    kb = load_kb(
        kb_path,
        kb_format=kb_format,
        text=text,
        kb_images=kb_images,
        issues=issues,
        progress=progress,
    )
    counts = RowCounts()
    queries = iter_evqa_queries(
        csv_path,
        image_dir,
        id_map=id_map,
        image_pattern=image_pattern,
        drop_question_types=drop_question_types,
        id_prefix=id_prefix,
        check_images=check_images,
        issues=issues,
        counts=counts,
    )
    return assemble_dataset(
        name,
        list(queries),
        kb,
        dropped=counts.dropped,
        pools_path=pools_path,
        issues=issues,
        source=str(csv_path),
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

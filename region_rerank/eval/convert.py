"""Convert the released E-VQA / InfoSeek files into the generic JSONL layout, streaming.

The generic layout (:mod:`region_rerank.eval.datasets`) is what ``region-rerank pools`` and
``region-rerank eval`` read. The converters stream: the KB is written entry by entry as it is
read and the questions row by row, so memory holds the KB ids (and, for an InfoSeek KB in
the E-VQA schema, its titles), never the KB text. Files are written under temporary names
and renamed at the end, so an interrupted run leaves no half-written layout; a rerun
starts over (the KB pass is the slow part: about a minute per GB on one core).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from region_rerank.eval._rows import RowIssues, iter_jsonl, resolve_image
from region_rerank.eval._schema import EvalQuery, KBEntry
from region_rerank.eval.datasets_evqa import RowCounts, iter_evqa_queries
from region_rerank.eval.datasets_infoseek import (
    entity_resolver,
    iter_infoseek_queries,
    load_entity_map,
    load_qtypes,
    load_withkb,
)
from region_rerank.eval.image_layouts import OvenImageLayout, load_id_map
from region_rerank.eval.kb_readers import KBFormat, KBImages, detect_kb_format, iter_kb_entries
from region_rerank.eval.kb_text import REFERENCE_TEXT, KBTextConfig

__all__ = ["ConvertSummary", "ImageCheck", "check_images", "convert_evqa", "convert_infoseek"]

logger = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


@dataclass
class ConvertSummary:
    """What a conversion did (printed by the CLI).

    Attributes:
        out: The layout folder.
        counts: Question rows read / kept / dropped and query images found.
        kb_entries: KB entries written.
        skipped: Malformed rows and KB entries skipped (lenient mode).
        seconds: Wall time.
    """

    out: Path
    counts: RowCounts = field(default_factory=RowCounts)
    kb_entries: int = 0
    skipped: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """A short human-readable report."""
        c = self.counts
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(c.dropped.items())) or "none"
        out = [
            f"wrote {self.out}: {c.kept} queries, {self.kb_entries} KB entries "
            f"({self.seconds:.0f} s)",
            f"rows read {c.rows}; kept {c.kept}; dropped {dropped}; malformed skipped "
            f"{self.skipped}",
            f"query images found {c.images_found} / {c.images_found + c.images_missing}",
        ]
        out += [f"  missing: {m}" for m in c.missing_examples]
        return out


@contextmanager
def _atomic(path: Path) -> Iterator[IO[str]]:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as fh:
        yield fh
    os.replace(tmp, path)


def _image_str(image: Any) -> str:
    return image if isinstance(image, str) else os.path.abspath(image)


def _query_row(q: EvalQuery) -> dict[str, Any]:
    row: dict[str, Any] = {k: v for k, v in q.metadata.items() if k not in ("id", "image")}
    row.update(
        id=q.id,
        image=_image_str(q.image),
        question=q.question,
        positives=sorted(q.positives),
        box=None,
        question_type=q.question_type,
    )
    return row


def _kb_row(e: KBEntry) -> dict[str, Any]:
    row: dict[str, Any] = dict(e.metadata)
    row.update(id=e.id, text=e.text, images=[_image_str(i) for i in e.images])
    return row


def _write_kb(entries: Iterable[KBEntry], out: Path, titles: dict[str, str] | None) -> set[str]:
    ids: set[str] = set()
    with _atomic(out / "kb.jsonl") as fh:
        for entry in entries:
            if entry.id in ids:
                continue  # a repeated id keeps its first entry, as load_kb does
            ids.add(entry.id)
            if titles is not None and isinstance(entry.metadata.get("title"), str):
                titles.setdefault(entry.metadata["title"], entry.id)
            fh.write(json.dumps(_kb_row(entry), ensure_ascii=False) + "\n")
    return ids


def _write_queries(queries: Iterable[EvalQuery], out: Path, kb_ids: set[str]) -> None:
    unknown = 0
    with _atomic(out / "queries.jsonl") as fh:
        for q in queries:
            unknown += not (q.positives & kb_ids)
            fh.write(json.dumps(_query_row(q), ensure_ascii=False) + "\n")
    if unknown:
        logger.warning("%d queries have no positive in the KB", unknown)


class _Job:
    """One conversion: the KB pass, then the question pass, then the summary."""

    def __init__(self, out: PathLike, lenient: bool) -> None:
        self.start = time.perf_counter()
        self.root = Path(out)
        self.root.mkdir(parents=True, exist_ok=True)
        self.issues = RowIssues(lenient)
        self.summary = ConvertSummary(self.root)
        self.kb_ids: set[str] = set()

    def write_kb(
        self, path: PathLike, fmt: KBFormat, text: KBTextConfig, images: KBImages, progress: bool
    ) -> dict[str, str] | None:
        """Stream the KB to ``kb.jsonl``; return ``title -> id`` unless it is Wiki6M."""
        titles: dict[str, str] | None = None if fmt == "wiki6m" else {}
        entries = iter_kb_entries(
            path, kb_format=fmt, text=text, kb_images=images, issues=self.issues, progress=progress
        )
        self.kb_ids = _write_kb(entries, self.root, titles)
        return titles

    def finish(self, queries: Iterable[EvalQuery]) -> ConvertSummary:
        _write_queries(queries, self.root, self.kb_ids)
        self.summary.kb_entries, self.summary.skipped = len(self.kb_ids), self.issues.skipped
        self.summary.seconds = time.perf_counter() - self.start
        return self.summary


def convert_evqa(
    csv_path: PathLike,
    kb_path: PathLike,
    image_dir: PathLike,
    out: PathLike,
    *,
    id_map: PathLike | None = None,
    drop_question_types: tuple[str, ...] = ("2_hop",),
    text: KBTextConfig = REFERENCE_TEXT,
    kb_images: KBImages = "urls",
    lenient: bool = False,
    progress: bool = False,
) -> ConvertSummary:
    """Write ``out/kb.jsonl`` and ``out/queries.jsonl`` from the released E-VQA files.

    Query ids, image paths, answers and KB text are those of
    :func:`~region_rerank.eval.datasets_evqa.load_evqa` (same arguments).

    Raises:
        DatasetFormatError: A malformed row or KB entry in strict mode.
    """
    job = _Job(out, lenient)
    job.write_kb(kb_path, "evqa", text, kb_images, progress)
    queries = iter_evqa_queries(
        csv_path,
        image_dir,
        id_map=load_id_map(id_map) if id_map else None,
        drop_question_types=drop_question_types,
        issues=job.issues,
        counts=job.summary.counts,
    )
    return job.finish(queries)


def convert_infoseek(
    questions: PathLike,
    withkb: PathLike,
    kb_path: PathLike,
    image_dir: PathLike,
    out: PathLike,
    *,
    qtype: PathLike | None = None,
    entity_map: PathLike | None = None,
    image_id_map: PathLike | None = None,
    kb_format: KBFormat = "auto",
    text: KBTextConfig = REFERENCE_TEXT,
    kb_images: KBImages = "urls",
    lenient: bool = False,
    progress: bool = False,
) -> ConvertSummary:
    """Write the generic layout from the released InfoSeek files (arguments as
    :func:`~region_rerank.eval.datasets_infoseek.load_infoseek`)."""
    job = _Job(out, lenient)
    fmt = detect_kb_format(kb_path) if kb_format == "auto" else kb_format
    titles = job.write_kb(kb_path, fmt, text, kb_images, progress)
    issues = job.issues
    resolver = entity_resolver(
        by_wikidata_id=fmt == "wiki6m",
        entity_map=load_entity_map(entity_map) if entity_map else None,
        titles=titles,
    )
    layout = OvenImageLayout(image_dir, load_id_map(image_id_map) if image_id_map else None)
    queries = iter_infoseek_queries(
        questions,
        load_withkb(withkb, issues),
        resolver,
        layout,
        qtypes=load_qtypes(qtype, issues) if qtype else None,
        issues=issues,
        counts=job.summary.counts,
    )
    return job.finish(queries)


@dataclass
class ImageCheck:
    """How many query images of a layout exist.

    Attributes:
        queries: Queries read.
        found: Local image files that exist.
        missing: Local image files that do not exist.
        remote: Images given as URLs / data URIs (not checked).
        missing_examples: A few missing paths.
    """

    queries: int = 0
    found: int = 0
    missing: int = 0
    remote: int = 0
    missing_examples: list[str] = field(default_factory=list)


def check_images(queries_jsonl: PathLike) -> ImageCheck:
    """Count the query images of a ``queries.jsonl`` that exist, streaming the file.

    Relative paths are resolved against the file's folder, as the loader does. Lines that
    are not objects with an ``image`` string are counted as missing.
    """
    path = Path(queries_jsonl)
    report = ImageCheck()
    for line_no, value in iter_jsonl(path):
        report.queries += 1
        image = value.get("image") if isinstance(value, dict) else None
        resolved = resolve_image(image, path.parent) if isinstance(image, str) and image else None
        if isinstance(resolved, str):
            report.remote += 1
        elif resolved is not None and resolved.is_file():
            report.found += 1
        else:
            report.missing += 1
            if len(report.missing_examples) < 5:
                report.missing_examples.append(f"line {line_no}: {resolved or image!r}")
    return report

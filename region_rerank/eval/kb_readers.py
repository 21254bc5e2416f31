"""Knowledge-base readers: the E-VQA KB JSON and the Wiki6M JSON Lines, streamed.

**E-VQA schema** (``encyclopedic_kb_wiki.json``; the EchoSight / OMGM InfoSeek 100K KB uses
the same schema): one JSON object ``wikipedia_url -> {"title", "section_titles",
"section_texts", "image_urls", "image_reference_descriptions", "image_section_indices",
"url"}``. The KB id is the key (the URL), the text is :func:`~region_rerank.eval.kb_text.
entry_text` of ``title`` and ``section_texts``, the images are ``image_urls``.

**Wiki6M** (``Wiki6M_ver_1_0.jsonl[.gz]``, InfoSeek / OVEN): one JSON object per line with
``wikidata_id``, ``wikipedia_title``, ``wikipedia_content`` and ``wikipedia_image_url``. The
KB id is ``wikidata_id`` (the InfoSeek ``entity_id``), the text is the title and the content,
the image is ``wikipedia_image_url`` when it is not empty.

Entries are yielded one at a time (:func:`iter_kb_entries`): memory holds the entries kept
(text cut to ``max_chars``, image URLs, title) and one entry being parsed, never the file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from region_rerank._validate import check_choice
from region_rerank.eval._rows import (
    DatasetFormatError,
    RowIssues,
    RowProblem,
    get_id,
    get_str,
    get_str_list,
    req_str,
    require_object,
)
from region_rerank.eval._schema import KBEntry
from region_rerank.eval.json_stream import iter_json_object, iter_jsonl, open_binary
from region_rerank.eval.kb_text import REFERENCE_TEXT, KBTextConfig, entry_text
from region_rerank.types import ImageLike

__all__ = [
    "KBFormat",
    "KBImages",
    "detect_kb_format",
    "iter_kb_entries",
    "load_kb",
]

logger = logging.getLogger("region_rerank.eval.datasets")

#: A KB file format; ``"auto"`` looks at the file.
KBFormat = Literal["auto", "evqa", "wiki6m"]
#: ``"urls"`` keeps the image URLs, ``"none"`` keeps none, or ``(kb_id, raw entry) -> images``.
KBImages = Literal["urls", "none"] | Callable[[str, Mapping[str, Any]], Sequence[ImageLike]]
PathLike = str | os.PathLike[str]

_PROBE = 1 << 20


def detect_kb_format(path: PathLike) -> Literal["evqa", "wiki6m"]:
    """``"wiki6m"`` when the first line is a JSON object with a ``wikidata_id``, else
    ``"evqa"`` (one JSON object, possibly on a single multi-GB line)."""
    with open_binary(path) as (stream, _):
        head = stream.read(_PROBE)
    end = head.find(b"\n")
    if end < 0:
        return "evqa"
    try:
        first = json.loads(head[:end].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "evqa"
    return "wiki6m" if isinstance(first, dict) and "wikidata_id" in first else "evqa"


def _images(kb_images: KBImages, key: str, obj: Mapping[str, Any], urls: Sequence[str]) -> tuple:
    if kb_images == "urls":
        return tuple(urls)
    if kb_images == "none":
        return ()
    return tuple(kb_images(key, obj))


def _evqa_entry(key: str, value: Any, text: KBTextConfig, kb_images: KBImages) -> KBEntry:
    obj = require_object(value)
    title = req_str(obj, "title")
    sections = get_str_list(obj, "section_texts", required=False)
    urls = get_str_list(obj, "image_urls", required=False)
    url = get_str(obj, "url", required=False) or key
    return KBEntry(
        key,
        entry_text(title, sections, text),
        _images(kb_images, key, obj, urls),
        {"title": title, "url": url},
    )


def _wiki6m_entry(value: Any, text: KBTextConfig, kb_images: KBImages) -> KBEntry:
    obj = require_object(value)
    key = get_id(obj, "wikidata_id")
    title = req_str(obj, "wikipedia_title")
    content = get_str(obj, "wikipedia_content", required=False) or ""
    image = get_str(obj, "wikipedia_image_url", required=False)
    return KBEntry(
        key,
        entry_text(title, [content], text),
        _images(kb_images, key, obj, [image] if image else []),
        {"title": title, "wikidata_id": key},
    )


def iter_kb_entries(
    path: PathLike,
    *,
    kb_format: KBFormat = "auto",
    text: KBTextConfig = REFERENCE_TEXT,
    kb_images: KBImages = "urls",
    issues: RowIssues | None = None,
    progress: bool = False,
) -> Iterator[KBEntry]:
    """Yield the entries of a KB file one at a time, in file order.

    Args:
        path: The KB (E-VQA JSON or Wiki6M JSONL; ``.gz`` is read transparently).
        kb_format: ``"evqa"``, ``"wiki6m"`` or ``"auto"`` (:func:`detect_kb_format`).
        text: How the entry text is assembled (default: the reference assembly).
        kb_images: Image policy (``"urls"``, ``"none"`` or a callable).
        issues: Collector of malformed entries (default: strict, the first one raises).
        progress: Show a progress bar over the bytes read.

    Raises:
        DatasetFormatError: Invalid JSON (fatal even in lenient mode: the file cannot be
            resynchronised) or, in strict mode, a malformed entry.
    """
    check_choice("kb_format", kb_format, ("auto", "evqa", "wiki6m"))
    p = Path(path)
    fmt = detect_kb_format(p) if kb_format == "auto" else kb_format
    collector = issues if issues is not None else RowIssues(False)
    if fmt == "evqa":
        for key, value in iter_json_object(p, progress=progress, desc=f"KB {p.name}"):
            try:
                yield _evqa_entry(key, value, text, kb_images)
            except RowProblem as exc:
                collector.report(DatasetFormatError(p, None, f"KB entry {key!r}: {exc}"))
        return
    for line_no, value in iter_jsonl(p, progress=progress, desc=f"KB {p.name}"):
        try:
            if isinstance(value, RowProblem):
                raise value
            yield _wiki6m_entry(value, text, kb_images)
        except RowProblem as exc:
            collector.report(DatasetFormatError(p, line_no, str(exc)))


def load_kb(
    path: PathLike,
    *,
    kb_format: KBFormat = "auto",
    text: KBTextConfig = REFERENCE_TEXT,
    kb_images: KBImages = "urls",
    issues: RowIssues | None = None,
    lenient: bool = False,
    progress: bool = False,
) -> dict[str, KBEntry]:
    """Read a whole KB into ``id -> KBEntry`` (streamed; see :func:`iter_kb_entries`).

    A repeated id keeps its first entry; repeats are counted and logged once.

    Args:
        lenient: Skip and count malformed entries (ignored when ``issues`` is given).
        Others: As :func:`iter_kb_entries`.
    """
    own = issues is None
    collector = RowIssues(lenient) if issues is None else issues
    kb: dict[str, KBEntry] = {}
    repeats = 0
    for entry in iter_kb_entries(
        path,
        kb_format=kb_format,
        text=text,
        kb_images=kb_images,
        issues=collector,
        progress=progress,
    ):
        if entry.id in kb:
            repeats += 1
            continue
        kb[entry.id] = entry
    if repeats:
        logger.warning("%s: %d repeated KB id(s); the first entry of each was kept", path, repeats)
    if own:
        collector.log_summary(str(path))
    return kb

"""InfoSeek loader: the released question files joined with ``*_withkb`` by ``data_id``.

Files (open-vision-language/infoseek release; see docs/datasets.md):

- ``infoseek_{train,val,test}.jsonl``: one question per line with ``data_id``,
  ``image_id`` (an OVEN id, ``oven_<8 digits>``), ``question``, ``answer`` (list),
  ``answer_eval`` (strings, or ``{"wikidata": x, "range": [lo, hi]}`` for numbers) and
  ``data_split``. No entity.
- ``infoseek_{train,val}_withkb.jsonl``: ``data_id``, ``entity_id`` (a Wikidata id) and
  ``entity_text``; joined to the questions by ``data_id``. A question without a withkb
  record (every test question) is dropped and counted as ``no_withkb_record``.
- ``infoseek_val_qtype.jsonl`` (optional): ``data_id`` and ``question_type``; without it the
  question type is the record's ``data_split``.
- The KB: Wiki6M (JSON Lines keyed by ``wikidata_id``: the positive is the ``entity_id``), or
  a KB in the E-VQA schema keyed by Wikipedia URL (the 100K KB of EchoSight / OMGM): the
  positive is ``entity_map[entity_id]`` when an entity map is given, else the entry whose
  title equals ``entity_text``.
- Images: :class:`~region_rerank.eval.image_layouts.OvenImageLayout`.

Query ids are the ``data_id`` values, as EchoSight and OMGM key their pools.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

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
from region_rerank.eval._schema import EvalDataset, EvalQuery, KBEntry
from region_rerank.eval.datasets_evqa import PathLike, RowCounts, assemble_dataset
from region_rerank.eval.image_layouts import OvenImageLayout, load_id_map
from region_rerank.eval.json_stream import iter_json_object, iter_jsonl
from region_rerank.eval.kb_readers import KBFormat, KBImages, detect_kb_format, load_kb
from region_rerank.eval.kb_text import REFERENCE_TEXT, KBTextConfig

__all__ = [
    "EntityResolver",
    "iter_infoseek_queries",
    "load_entity_map",
    "load_infoseek",
    "load_qtypes",
    "load_withkb",
    "titles_of",
    "entity_resolver",
]

#: ``(entity_id, entity_text) -> KB key`` (raises :class:`RowProblem` when there is none).
EntityResolver = Callable[[str, str], str]


def _read_jsonl_map(
    path: PathLike, value_fields: tuple[str, ...], issues: RowIssues
) -> dict[str, tuple[str, ...]]:
    p = Path(path)
    out: dict[str, tuple[str, ...]] = {}
    for line_no, value in iter_jsonl(p):
        try:
            if isinstance(value, RowProblem):
                raise value
            obj = require_object(value)
            data_id = get_id(obj, "data_id")
            if data_id in out:
                raise RowProblem(f"repeated data_id {data_id!r}")
            out[data_id] = tuple(
                get_id(obj, f) if f.endswith("_id") else req_str(obj, f) for f in value_fields
            )
        except RowProblem as exc:
            issues.report(DatasetFormatError(p, line_no, str(exc)))
    return out


def load_withkb(path: PathLike, issues: RowIssues | None = None) -> dict[str, tuple[str, str]]:
    """Read ``infoseek_*_withkb.jsonl`` into ``data_id -> (entity_id, entity_text)``.

    Raises:
        DatasetFormatError: A malformed line in strict mode (missing ``entity_id``...).
    """
    rows = _read_jsonl_map(path, ("entity_id", "entity_text"), issues or RowIssues(False))
    return {k: (v[0], v[1]) for k, v in rows.items()}


def load_qtypes(path: PathLike, issues: RowIssues | None = None) -> dict[str, str]:
    """Read ``infoseek_val_qtype.jsonl`` into ``data_id -> question_type``."""
    rows = _read_jsonl_map(path, ("question_type",), issues or RowIssues(False))
    return {k: v[0] for k, v in rows.items()}


def load_entity_map(path: PathLike) -> dict[str, str]:
    """Read one JSON object ``entity_id -> KB key`` (e.g. Wikidata id -> Wikipedia URL).

    Raises:
        DatasetFormatError: Not a JSON object of strings.
    """
    p = Path(path)
    out = {}
    for key, value in iter_json_object(p):
        if not isinstance(value, str):
            raise DatasetFormatError(p, None, f"entity {key!r} maps to a non-string value")
        out[key] = value
    return out


def entity_resolver(
    *,
    by_wikidata_id: bool,
    entity_map: Mapping[str, str] | None = None,
    titles: Mapping[str, str] | None = None,
) -> EntityResolver:
    """How an InfoSeek entity becomes a KB key (see the module docstring).

    Args:
        by_wikidata_id: The KB is keyed by Wikidata id (Wiki6M): the key is the entity id.
        entity_map: ``entity_id -> KB key``, tried first.
        titles: ``title -> KB key``, tried for entities the map lacks.
    """
    emap = dict(entity_map or {})
    tmap = dict(titles or {})

    def resolve(entity_id: str, entity_text: str) -> str:
        if entity_id in emap:
            return emap[entity_id]
        if by_wikidata_id:
            return entity_id
        if entity_text in tmap:
            return tmap[entity_text]
        raise RowProblem(
            f"entity {entity_id} ({entity_text!r}) has no KB entry: no KB title matches and "
            "the entity map (entity_map / --entity-map) does not list it"
        )

    return resolve


def _answers(obj: dict[str, Any]) -> list[str]:
    answer = obj.get("answer")
    return [answer] if isinstance(answer, str) else get_str_list(obj, "answer")


def iter_infoseek_queries(
    questions: PathLike,
    withkb: Mapping[str, tuple[str, str]],
    resolve_entity: EntityResolver,
    layout: OvenImageLayout,
    *,
    qtypes: Mapping[str, str] | None = None,
    check_images: bool = False,
    issues: RowIssues | None = None,
    counts: RowCounts | None = None,
) -> Iterator[EvalQuery]:
    """Yield the queries of an InfoSeek question file one line at a time.

    Args:
        questions: ``infoseek_{split}.jsonl``.
        withkb: From :func:`load_withkb`.
        resolve_entity: From :func:`entity_resolver`.
        layout: Where the OVEN images are.
        qtypes: From :func:`load_qtypes` (else the question type is ``data_split``).
        check_images: Treat a missing image file as a malformed record.
        issues: Collector of malformed records (default: strict).
        counts: Filled with rows kept / dropped and images found.
    """
    source = Path(questions)
    collector = issues if issues is not None else RowIssues(False)
    stats = counts if counts is not None else RowCounts()
    seen: dict[str, int] = {}
    for line_no, value in iter_jsonl(source):
        stats.rows += 1
        try:
            if isinstance(value, RowProblem):
                raise value
            obj = require_object(value)
            data_id = get_id(obj, "data_id")
            if data_id in seen:
                raise RowProblem(f"duplicate data_id {data_id!r} (first on line {seen[data_id]})")
            seen[data_id] = line_no
            if data_id not in withkb:
                stats.dropped["no_withkb_record"] += 1
                continue
            entity_id, entity_text = withkb[data_id]
            positive = resolve_entity(entity_id, entity_text)
            image_id = get_id(obj, "image_id")
            question = req_str(obj, "question").strip()
            if not question:
                raise RowProblem("empty 'question'")
            split = get_str(obj, "data_split", required=False) or ""
            meta = {
                "answers": _answers(obj),
                "answer_eval": obj.get("answer_eval", []),
                "data_split": split,
                "entity_id": entity_id,
                "entity_text": entity_text,
                "image_id": image_id,
            }
            image = layout.resolve(image_id)
            if not stats.image(image) and check_images:
                raise RowProblem(f"image file not found: {image} (also tried .JPEG, flat)")
        except RowProblem as exc:
            collector.report(DatasetFormatError(source, line_no, str(exc)))
            continue
        qtype = qtypes.get(data_id, split) if qtypes is not None else split
        stats.kept += 1
        yield EvalQuery(
            id=data_id,
            image=image,
            question=question,
            positives=frozenset({positive}),
            question_type=qtype or None,
            metadata=meta,
        )


def titles_of(kb: Mapping[str, KBEntry]) -> dict[str, str]:
    """``title -> KB key`` (the first entry of a repeated title wins)."""
    out: dict[str, str] = {}
    for key, entry in kb.items():
        title = entry.metadata.get("title")
        if isinstance(title, str):
            out.setdefault(title, key)
    return out


def load_infoseek(
    questions: PathLike,
    withkb: PathLike,
    kb_path: PathLike,
    image_dir: PathLike,
    *,
    qtype: PathLike | None = None,
    entity_map: PathLike | Mapping[str, str] | None = None,
    image_id_map: PathLike | None = None,
    kb_format: KBFormat = "auto",
    text: KBTextConfig = REFERENCE_TEXT,
    kb_images: KBImages = "urls",
    pools_path: PathLike | None = None,
    check_images: bool = False,
    lenient: bool = False,
    name: str = "infoseek",
    progress: bool = False,
) -> EvalDataset:
    """Load InfoSeek as released (see the module docstring for the files).

    Args:
        questions: ``infoseek_{train,val}.jsonl``.
        withkb: The matching ``infoseek_{train,val}_withkb.jsonl``.
        kb_path: Wiki6M JSONL (plain or ``.gz``) or a KB JSON in the E-VQA schema.
        image_dir: The OVEN image folder (two-digit subfolders or flat).
        qtype: Optional ``infoseek_val_qtype.jsonl``.
        entity_map: ``entity_id -> KB key`` (a JSON object file or a mapping) for a KB
            keyed otherwise than by Wikidata id.
        image_id_map: Optional InfoSeek ``id2image.jsonl`` (``image_id -> path``).
        kb_format: ``"auto"`` (default), ``"wiki6m"`` or ``"evqa"``.
        text: How KB entry text is assembled (default: the reference assembly).
        kb_images: KB image policy, see :func:`~region_rerank.eval.datasets_evqa.load_evqa_kb`.
        pools_path: Optional ``pools.jsonl`` (generic layout).
        check_images: Treat a missing image file as a malformed record.
        lenient: Skip and count malformed records instead of raising.
        name: Dataset name.
        progress: Progress bar while the KB is read.

    Raises:
        DatasetFormatError: A malformed record, withkb line or KB entry in strict mode
            (file + line + reason).
    """
    issues = RowIssues(lenient)
    fmt = detect_kb_format(kb_path) if kb_format == "auto" else kb_format
    kb = load_kb(
        kb_path, kb_format=fmt, text=text, kb_images=kb_images, issues=issues, progress=progress
    )
    emap = load_entity_map(entity_map) if isinstance(entity_map, (str, os.PathLike)) else entity_map
    resolver = entity_resolver(
        by_wikidata_id=fmt == "wiki6m",
        entity_map=emap,
        titles=None if fmt == "wiki6m" else titles_of(kb),
    )
    layout = OvenImageLayout(image_dir, load_id_map(image_id_map) if image_id_map else None)
    counts = RowCounts()
    queries = iter_infoseek_queries(
        questions,
        load_withkb(withkb, issues),
        resolver,
        layout,
        qtypes=load_qtypes(qtype, issues) if qtype is not None else None,
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
        source=str(questions),
    )

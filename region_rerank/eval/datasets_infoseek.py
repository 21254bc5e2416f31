"""InfoSeek loader and its conversion to the E-VQA CSV layout (METHOD.md section 6).

InfoSeek JSONL records carry ``data_id``, ``image_id``, ``question``, ``answer`` (list of
strings), ``answer_eval``, ``data_split`` and, in the ``*_withkb`` files, ``entity_id``.
An ``entity_id`` -> KB key mapping (the KB uses the E-VQA schema, see
:func:`region_rerank.eval.datasets_evqa.load_evqa_kb`) turns each record into an E-VQA row
(:func:`infoseek_to_evqa_rows`, ``dataset_name = infoseek``, ``id = data_id``); those rows
load exactly like E-VQA rows, and :func:`~region_rerank.eval.datasets_evqa.write_evqa_csv`
writes them as an E-VQA CSV.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from region_rerank.eval._rows import (
    DatasetFormatError,
    RowIssues,
    RowProblem,
    get_id,
    get_str,
    get_str_list,
    iter_jsonl,
    req_str,
    require_object,
)
from region_rerank.eval._schema import EvalDataset
from region_rerank.eval.datasets_evqa import (
    ImagePattern,
    KBImages,
    PathLike,
    build_from_rows,
    read_kb,
)

__all__ = ["load_entity_map", "infoseek_to_evqa_rows", "load_infoseek"]


def load_entity_map(path: PathLike) -> dict[str, str]:
    """Read a JSON object mapping InfoSeek ``entity_id`` -> KB key (e.g. Wikipedia URL)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(path, exc.lineno, f"invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise DatasetFormatError(path, None, "expected one JSON object entity_id -> KB key")
    return data


def _infoseek_row(
    obj: dict[str, Any], entity_to_kb: Mapping[str, str], qtype_field: str | None
) -> dict[str, str]:
    data_id = get_id(obj, "data_id")
    image_id = get_id(obj, "image_id")
    question = req_str(obj, "question")
    answer = obj.get("answer")
    answers = [answer] if isinstance(answer, str) else get_str_list(obj, "answer")
    if "entity_id" not in obj:
        raise RowProblem("missing 'entity_id' (use the InfoSeek *_withkb files)")
    entity = get_id(obj, "entity_id")
    if entity not in entity_to_kb:
        raise RowProblem(f"entity_id {entity!r} has no KB key in the entity mapping")
    split = get_str(obj, "data_split", required=False) or ""
    qtype = get_str(obj, qtype_field, required=False) if qtype_field else None
    return {
        "question": question,
        "answer": "|".join(answers),
        "dataset_image_ids": image_id,
        "dataset_name": "infoseek",
        "question_type": qtype or "",
        "wikipedia_url": entity_to_kb[entity],
        "wikipedia_title": str(obj.get("entity_text") or ""),
        "evidence": "",
        "evidence_section_id": "",
        "encyclopedic_vqa_split": split,
        "id": data_id,
        "entity_id": entity,
        "answer_eval": json.dumps(obj.get("answer_eval", []), ensure_ascii=False),
    }


def _convert_infoseek(
    records: PathLike | Iterable[Mapping[str, Any]],
    entity_to_kb: Mapping[str, str],
    qtype_field: str | None,
    issues: RowIssues,
) -> tuple[Path, list[tuple[int, dict[str, str]]]]:
    if isinstance(records, (str, os.PathLike)):
        source = Path(records)
        items: Iterable[tuple[int, Any]] = iter_jsonl(source)
    else:
        source = Path("<records>")
        items = enumerate(records, start=1)
    rows: list[tuple[int, dict[str, str]]] = []
    for line_no, value in items:
        try:
            if isinstance(value, RowProblem):
                raise value
            obj = dict(value) if isinstance(value, Mapping) else require_object(value)
            rows.append((line_no, _infoseek_row(obj, entity_to_kb, qtype_field)))
        except RowProblem as exc:
            issues.report(DatasetFormatError(source, line_no, str(exc)))
    return source, rows


def infoseek_to_evqa_rows(
    records: PathLike | Iterable[Mapping[str, Any]],
    entity_to_kb: Mapping[str, str],
    *,
    question_type_field: str | None = "data_split",
    lenient: bool = False,
) -> list[dict[str, str]]:
    """Convert InfoSeek records to rows of the E-VQA CSV layout.

    Each row has the :data:`EVQA_COLUMNS` with ``dataset_name = "infoseek"``,
    ``dataset_image_ids = image_id``, ``answer`` = the answers joined by ``|``,
    ``wikipedia_url`` = the KB key of ``entity_id``, ``question_type`` = the record's
    ``question_type_field`` (default ``data_split``, e.g. ``val_unseen_entity``), and the
    extra columns ``id`` (= ``data_id``), ``entity_id`` and ``answer_eval`` (JSON text).

    Args:
        records: A JSONL path or parsed records (for the latter, "line" in errors is the
            1-based record index).
        entity_to_kb: ``entity_id`` -> KB key (see :func:`load_entity_map`).
        question_type_field: Record field copied into ``question_type`` (``None``: empty).
        lenient: Skip and count malformed records instead of raising.

    Raises:
        DatasetFormatError: A malformed record in strict mode (missing ``entity_id``,
            entity without a KB key, wrong field types...).
    """
    issues = RowIssues(lenient)
    source, rows = _convert_infoseek(records, entity_to_kb, question_type_field, issues)
    issues.log_summary(str(source))
    return [row for _, row in rows]


def load_infoseek(
    jsonl_path: PathLike,
    kb_path: PathLike,
    image_dir: PathLike,
    entity_to_kb: Mapping[str, str] | PathLike,
    *,
    image_pattern: ImagePattern = "{image_id}.jpg",
    question_type_field: str | None = "data_split",
    text_max_chars: int = 500,
    kb_images: KBImages = "urls",
    pools_path: PathLike | None = None,
    check_images: bool = False,
    lenient: bool = False,
    name: str = "infoseek",
) -> EvalDataset:
    """Load InfoSeek (``*_withkb`` JSONL) against a KB in the E-VQA schema.

    The records go through :func:`infoseek_to_evqa_rows` and then the E-VQA row loader,
    so query ids are the ``data_id`` values. Arguments as :func:`load_evqa`;
    ``entity_to_kb`` is a mapping or a JSON file for :func:`load_entity_map`.

    Raises:
        DatasetFormatError: A malformed record or KB entry in strict mode, naming the file
            and line.
    """
    mapping = entity_to_kb if isinstance(entity_to_kb, Mapping) else load_entity_map(entity_to_kb)
    issues = RowIssues(lenient)
    kb = read_kb(Path(kb_path), text_max_chars, kb_images, issues)
    source, rows = _convert_infoseek(jsonl_path, mapping, question_type_field, issues)
    return build_from_rows(
        name,
        source,
        rows,
        kb,
        image_dir=Path(image_dir),
        image_pattern=image_pattern,
        drop_question_types=(),
        id_prefix="infoseek-",
        check_images=check_images,
        pools_path=pools_path,
        issues=issues,
    )

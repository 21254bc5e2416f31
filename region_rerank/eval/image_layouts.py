"""Where the benchmarks' query images live on disk, as the image datasets ship them.

- **Google Landmarks v2** (E-VQA ``dataset_name = landmarks``): 16-hex-character ids stored
  as ``a/b/c/<id>.jpg`` (the first three characters of the id as folders).
- **iNaturalist 2021** (``dataset_name = inaturalist``): numeric ids; the file name comes
  from an id map (EchoSight's ``{train,val}_id2name.json``, or the iNaturalist annotation
  file itself, whose ``images`` list holds ``id`` and ``file_name``).
- **OVEN** (InfoSeek, ``dataset_name = infoseek``): ``<two digits>/<image_id><ext>`` with
  the first two digits of the number after ``oven_`` and ``ext`` ``.jpg`` or ``.JPEG``
  (ImageNet-derived images), as ``merge_oven_images.py`` writes them; a flat folder of
  ``<image_id>.jpg|.JPEG`` (EchoSight / OMGM) works too.

One folder holds everything: E-VQA images under ``ROOT/landmarks`` and
``ROOT/inaturalist`` (or directly under ``ROOT``), OVEN images under ``ROOT``. Files renamed
to ``<image_id>.jpg`` (OMGM's instructions for iNaturalist) are found too. A resolver tries
its candidates in order and returns the first existing file, else the first candidate
(so a missing image is reported with its canonical path).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from region_rerank.eval._rows import DatasetFormatError
from region_rerank.eval.json_stream import iter_json_object, iter_jsonl, open_binary

__all__ = ["EVQAImageLayout", "OvenImageLayout", "load_id_map"]

PathLike = str | os.PathLike[str]


def _first_existing(candidates: list[Path]) -> Path:
    for path in candidates:
        if path.is_file():
            return path
    return candidates[0]


class OvenImageLayout:
    """OVEN image files under ``root`` (see the module docstring).

    Args:
        root: The OVEN image folder (``oven_images``).
        id_map: Optional ``image_id -> path`` (relative to ``root`` unless absolute), e.g.
            from InfoSeek's ``id2image.jsonl``; ids it lacks use the layout.
    """

    def __init__(self, root: PathLike, id_map: Mapping[str, str] | None = None) -> None:
        self.root = Path(root)
        self.id_map = dict(id_map or {})

    def candidates(self, image_id: str) -> list[Path]:
        """Paths tried for ``image_id``, in order."""
        found = [self.root / self.id_map[image_id]] if image_id in self.id_map else []
        shard = image_id.rsplit("_", 1)[-1][:2]
        for folder in (self.root / shard, self.root):
            found += [folder / f"{image_id}.jpg", folder / f"{image_id}.JPEG"]
        return found

    def resolve(self, image_id: str) -> Path:
        """The first existing candidate, else the canonical two-digit ``.jpg`` path."""
        return _first_existing(self.candidates(image_id))


class EVQAImageLayout:
    """E-VQA query image files under ``root`` (see the module docstring).

    Args:
        root: The image folder (holding ``landmarks/`` and ``inaturalist/``, or the files).
        id_map: iNaturalist ``image_id -> file name`` (see :func:`load_id_map`).
    """

    def __init__(self, root: PathLike, id_map: Mapping[str, str] | None = None) -> None:
        self.root = Path(root)
        self.id_map = dict(id_map) if id_map is not None else None
        self._oven = OvenImageLayout(self.root)

    def candidates(self, image_id: str, dataset_name: str) -> list[Path]:
        """Paths tried for ``image_id`` of ``dataset_name``, in order."""
        root, name = self.root, dataset_name.strip().lower()
        if name == "infoseek":
            return self._oven.candidates(image_id)
        flat = [root / name / f"{image_id}.jpg", root / f"{image_id}.jpg"]
        if name == "landmarks" and len(image_id) >= 3:
            a, b, c = image_id[0], image_id[1], image_id[2]
            return [
                root / name / a / b / c / f"{image_id}.jpg",
                root / a / b / c / f"{image_id}.jpg",
                *flat,
            ]
        if name == "inaturalist" and self.id_map and image_id in self.id_map:
            file_name = self.id_map[image_id]
            return [root / name / file_name, root / file_name, *flat]
        return flat

    def resolve(self, image_id: str, dataset_name: str) -> Path:
        """The first existing candidate, else the canonical one."""
        return _first_existing(self.candidates(image_id, dataset_name))

    def missing_hint(self, image_id: str, dataset_name: str) -> str:
        """Why an image may be missing, for the error message ('' when nothing to add)."""
        if dataset_name.strip().lower() != "inaturalist":
            return ""
        if self.id_map is None:
            return (
                "; iNaturalist ids resolve through an id -> file name map: pass id_map "
                "(--id-map), e.g. EchoSight's val_id2name.json or the iNaturalist val.json"
            )
        if image_id not in self.id_map:
            return f"; id {image_id} is not in the id map"
        return ""


def _from_coco(value: object, path: Path) -> dict[str, str]:
    if not isinstance(value, list):
        raise DatasetFormatError(path, None, "'images' must be a list of {id, file_name}")
    out = {}
    for item in value:
        if not isinstance(item, dict) or "id" not in item or "file_name" not in item:
            raise DatasetFormatError(path, None, "each 'images' item needs 'id' and 'file_name'")
        out[str(item["id"])] = str(item["file_name"])
    return out


def load_id_map(path: PathLike) -> dict[str, str]:
    """Read an image id -> file name map.

    Accepted forms: a JSON object ``{id: file name}`` (EchoSight's ``val_id2name.json``), an
    iNaturalist / COCO annotation file (``{"images": [{"id", "file_name"}, ...], ...}``), or
    JSON Lines of ``{"image_id", "image_path"}`` (InfoSeek's ``id2image.jsonl``).

    Raises:
        DatasetFormatError: None of these forms, or a malformed item.
    """
    p = Path(path)
    with open_binary(p) as (stream, _):
        head = stream.read(1 << 16).lstrip()
    if head.startswith(b"{") and b'"image_id"' in head.split(b"\n", 1)[0]:
        out: dict[str, str] = {}
        for line_no, row in iter_jsonl(p):
            if not isinstance(row, dict) or "image_id" not in row or "image_path" not in row:
                raise DatasetFormatError(p, line_no, "expected {image_id, image_path}")
            out[str(row["image_id"])] = str(row["image_path"])
        return out
    out = {}
    for key, value in iter_json_object(p, desc=p.name):
        if key == "images" and not isinstance(value, str):
            return _from_coco(value, p)
        if key in ("info", "categories", "annotations", "licenses"):
            continue
        if not isinstance(value, (str, int)):
            shown = json.dumps(value)[:60]
            raise DatasetFormatError(p, None, f"id {key!r} maps to {shown}, not a file name")
        out[key] = str(value)
    return out

"""Write the synthetic world to disk in the generic JSONL layout.

Layout under ``out_dir`` (image paths are relative to the folder of the JSONL file that
names them, as :func:`region_rerank.eval.datasets.load_jsonl_dataset` expects)::

    world.json                 manifest: format, seed, scene config, per-split counts
    kb.jsonl                   {id, text, images, title, name, shape, colour, pattern}
    kb_images/ent-000_0.png    reference images (PNG)
    {split}/queries.jsonl      {id, image, question, positives, box, question_type,
                                ref, detail, objects}
    {split}/images/{id}.png    query scenes (PNG)

Load a split with ``load_jsonl_dataset(out_dir / "test", kb_path=out_dir / "kb.jsonl")``.
The KB is shared by all splits; each split's scenes use their own seed stream. The same
arguments always produce byte-identical files (no timestamps, sorted JSON keys).

Example:
    >>> paths = make_world("/tmp/world", n_train=0, n_val=0, n_test=20)  # doctest: +SKIP
    >>> paths.queries["test"]  # doctest: +SKIP
    PosixPath('/tmp/world/test/queries.jsonl')
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank.demo.entities import build_kb, reference_images
from region_rerank.demo.scenes import SceneConfig, iter_queries
from region_rerank.errors import ConfigError

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["WORLD_FORMAT", "SPLITS", "WorldPaths", "make_world"]

logger = logging.getLogger(__name__)

#: Format tag written to ``world.json``.
WORLD_FORMAT = "region-rerank-synthetic-world/1"
#: Split names, in writing order.
SPLITS: tuple[str, ...] = ("train", "val", "test")
_FIXED_FIELDS = {"seed", "n_queries", "split", "templates_source"}


@dataclass(frozen=True)
class WorldPaths:
    """Where :func:`make_world` wrote things.

    Attributes:
        root: The output folder.
        manifest: ``world.json``.
        kb: ``kb.jsonl`` (shared by all splits).
        queries: Split name -> ``{split}/queries.jsonl`` (only splits with queries).
    """

    root: Path
    manifest: Path
    kb: Path
    queries: dict[str, Path]


def _progress(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    disabled = os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes")
    return tqdm(
        total=total, desc=desc, unit="img", disable=disabled or not sys.stderr.isatty(), leave=False
    )


def _save_png(image: Image.Image, path: Path) -> None:
    # Fixed settings and no metadata: the same pixels always give the same bytes.
    image.save(path, format="PNG", compress_level=6, optimize=False)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _scene_config(split: str, seed: int, n: int, overrides: dict[str, Any]) -> SceneConfig:
    allowed = {f.name for f in fields(SceneConfig)} - _FIXED_FIELDS
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown scene option(s) {unknown}; allowed: {sorted(allowed)} "
            "(seed and the query counts are make_world arguments)"
        )
    return SceneConfig(seed=seed, n_queries=n, split=split, **overrides)


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name}={value!r} must be an int >= 0")
    return value


def make_world(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    n_train: int = 1000,
    n_val: int = 200,
    n_test: int = 500,
    n_entities: int | None = None,
    kb_images: int = 2,
    kb_image_size: int = 112,
    **scene_overrides: Any,
) -> WorldPaths:
    """Generate the KB and the train / val / test query splits and write them to disk.

    Args:
        out_dir: Output folder (created; existing files of the same names are replaced).
        seed: World seed: reference-image variation and every split's scenes.
        n_train, n_val, n_test: Queries per split; a split with 0 queries is not written.
        n_entities: KB size (default: all 320 entities).
        kb_images: Reference images per entity.
        kb_image_size: Side of the reference images in pixels.
        **scene_overrides: Any other :class:`~region_rerank.demo.scenes.SceneConfig`
            field (``distractors``, ``target_scale``, ``distractor_scale``, ``clutter``,
            ``canvas_size``, ``templates``, ``question_types``, ``phrasing``,
            ``balance_subtypes``, ``paraphrases``), applied to every split.

    Returns:
        The written paths.

    Raises:
        ConfigError: On an invalid count, size or scene option (naming the field).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be an int >= 0")
    counts = {
        "train": _check_count("n_train", n_train),
        "val": _check_count("n_val", n_val),
        "test": _check_count("n_test", n_test),
    }
    configs = {s: _scene_config(s, seed, counts[s], dict(scene_overrides)) for s in SPLITS}
    kb = build_kb(n_entities)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    kb_dir = root / "kb_images"
    kb_dir.mkdir(exist_ok=True)
    kb_lines = []
    with _progress(len(kb), "kb images") as bar:
        for entity in kb:
            rels = []
            for k, img in enumerate(
                reference_images(entity, seed=seed, n=kb_images, size=kb_image_size)
            ):
                rel = f"kb_images/{entity.id}_{k}.png"
                _save_png(img, root / rel)
                rels.append(rel)
            kb_lines.append(
                _dumps(
                    {
                        "id": entity.id,
                        "text": entity.text,
                        "images": rels,
                        "title": entity.title,
                        "name": entity.name,
                        "shape": entity.shape,
                        "colour": entity.colour,
                        "pattern": entity.pattern,
                    }
                )
            )
            bar.update(1)
    kb_path = root / "kb.jsonl"
    kb_path.write_text("".join(line + "\n" for line in kb_lines), encoding="utf-8")
    logger.info("wrote %d KB entries (%d images each) to %s", len(kb), kb_images, kb_path)

    queries: dict[str, Path] = {}
    split_info: dict[str, Any] = {}
    for split in SPLITS:
        cfg = configs[split]
        if cfg.n_queries == 0:
            continue
        split_dir = root / split
        (split_dir / "images").mkdir(parents=True, exist_ok=True)
        lines = []
        types: Counter[str] = Counter()
        with _progress(cfg.n_queries, f"{split} scenes") as bar:
            for q in iter_queries(cfg, kb):
                rel = f"images/{q.id}.png"
                _save_png(q.image, split_dir / rel)
                types[q.question_type] += 1
                record = {
                    "id": q.id,
                    "image": rel,
                    "question": q.question,
                    "positives": [q.positive],
                    "box": list(q.box),
                    "question_type": q.question_type,
                    "ref": q.ref,
                    "detail": q.detail,
                    "objects": [{"id": o.entity_id, "box": list(o.box)} for o in q.objects],
                }
                if q.paraphrases:
                    record["paraphrases"] = list(q.paraphrases)
                lines.append(_dumps(record))
                bar.update(1)
        path = split_dir / "queries.jsonl"
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        queries[split] = path
        split_info[split] = {
            "n_queries": cfg.n_queries,
            "queries": f"{split}/queries.jsonl",
            "seed_stream": [seed, zlib.crc32(split.encode())],
            "question_types": dict(sorted(types.items())),
        }
        logger.info("wrote %d %s queries to %s", cfg.n_queries, split, path)

    scene = asdict(configs["test"])
    for key in ("seed", "n_queries", "split"):
        scene.pop(key)
    if not scene["paraphrases"]:
        del scene["paraphrases"]  # worlds made without paraphrases keep their manifest
    scene["templates"] = list(scene["templates"])
    manifest = {
        "format": WORLD_FORMAT,
        "seed": seed,
        "kb": {
            "path": "kb.jsonl",
            "n_entities": len(kb),
            "images_per_entity": kb_images,
            "image_size": kb_image_size,
        },
        "scene_config": scene,
        "splits": split_info,
        "paths_relative_to": "the folder of the JSONL file that names them",
    }
    manifest_path = root / "world.json"
    manifest_path.write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n", "utf-8")
    logger.info("world written to %s in %.1f s", root, time.perf_counter() - started)
    return WorldPaths(root=root, manifest=manifest_path, kb=kb_path, queries=queries)

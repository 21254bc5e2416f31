"""Train the demo world's class-agnostic object detector (:mod:`region_rerank.demo.detector`).

Scenes come from the world generator with seed 0 only (the training seed), with object
sizes, distractor counts and clutter drawn over wide ranges so that no one evaluation
setting is fitted; every object's box is a target. CenterNet's losses: a penalty-reduced
focal loss on the centre heat (Gaussian targets), L1 on the log box size and on the
centre's sub-cell offset at the object centres.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.boxes import iou
from region_rerank.demo.detector import (
    DETECTOR_INPUT,
    STRIDE,
    build_detector_net,
    to_input,
)
from region_rerank.progress import progress_bar
from region_rerank.types import Box

if TYPE_CHECKING:
    import torch

    from region_rerank.demo.scenes import SceneQuery

__all__ = ["DetectorTrainingConfig", "detector_recall", "scene_mix", "train_detector"]

logger = logging.getLogger(__name__)

#: The clutter levels and distractor ranges training scenes are drawn from.
_CLUTTER = (0.1, 0.2, 0.3, 0.45)
_DISTRACTORS = ((1, 3), (2, 4))
_SCALES = ((0.12, 0.5), (0.12, 0.45))


@dataclass(frozen=True)
class DetectorTrainingConfig:
    """Detector training settings.

    Attributes:
        n_train: Training scenes.
        n_val: Validation scenes (another split of the same seed).
        epochs: Passes over the training scenes.
        batch_size: Scenes per step.
        lr: AdamW learning rate (cosine schedule).
        width: Base channel width of the network.
        seed: World seed of the scenes (0: the training seed).
    """

    n_train: int = 3000
    n_val: int = 400
    epochs: int = 12
    batch_size: int = 32
    lr: float = 3e-3
    width: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "epochs", "batch_size", "width"):
            check_range(name, getattr(self, name), 1)
        check_range("lr", self.lr, 0.0, low_inclusive=False)


def scene_mix(split: str, n: int, seed: int = 0) -> list[SceneQuery]:
    """``n`` scenes of split ``split``, in eight equal groups over the clutter levels,
    distractor ranges and object-size ranges of :data:`_CLUTTER` / :data:`_DISTRACTORS`
    / :data:`_SCALES`."""
    from region_rerank.demo.entities import build_kb
    from region_rerank.demo.scenes import SceneConfig, generate_queries

    kb = build_kb()
    groups = [
        (c, d, s) for c in _CLUTTER for d, s in zip(_DISTRACTORS, _SCALES)
    ]  # fmt: skip
    out: list[SceneQuery] = []
    for i, (clutter, distractors, scales) in enumerate(groups):
        count = n // len(groups) + (1 if i < n % len(groups) else 0)
        if not count:
            continue
        cfg = SceneConfig(
            seed=seed, n_queries=count, split=f"{split}-{i}", clutter=clutter,
            distractors=distractors, target_scale=scales, distractor_scale=scales,
        )  # fmt: skip
        out.extend(generate_queries(cfg, kb))
    return out


def _targets(scenes: list[SceneQuery]) -> dict[str, torch.Tensor]:
    """Heat (Gaussian per object centre), and per object its cell, log size and offset."""
    import torch

    cells = DETECTOR_INPUT // STRIDE
    heat = torch.zeros(len(scenes), cells, cells)
    ys = torch.arange(cells, dtype=torch.float32)[:, None]
    xs = torch.arange(cells, dtype=torch.float32)[None, :]
    index, cell, size, offset = [], [], [], []
    for i, scene in enumerate(scenes):
        w, h = scene.image.size
        sx, sy = DETECTOR_INPUT / w, DETECTOR_INPUT / h
        for obj in scene.objects:
            x1, y1, x2, y2 = obj.box
            bw, bh = (x2 - x1) * sx, (y2 - y1) * sy
            cx, cy = (x1 + x2) / 2 * sx / STRIDE, (y1 + y2) / 2 * sy / STRIDE
            gx, gy = min(int(cx), cells - 1), min(int(cy), cells - 1)
            sigma = max(0.7, min(bw, bh) / STRIDE / 6)
            g = torch.exp(-((xs - gx) ** 2 + (ys - gy) ** 2) / (2 * sigma**2))
            heat[i] = torch.maximum(heat[i], g)
            index.append(i)
            cell.append((gy, gx))
            size.append((math.log(bw / DETECTOR_INPUT), math.log(bh / DETECTOR_INPUT)))
            offset.append((cx - gx, cy - gy))
    return {
        "heat": heat,
        "index": torch.tensor(index),
        "cell": torch.tensor(cell),
        "size": torch.tensor(size),
        "offset": torch.tensor(offset),
    }


def _loss(out: tuple[torch.Tensor, ...], tgt: dict[str, torch.Tensor], rows: torch.Tensor) -> Any:
    import torch

    heat, size, offset = out
    p = torch.sigmoid(heat).clamp(1e-4, 1 - 1e-4)
    t = tgt["heat"][rows]
    pos = t.eq(1.0).float()
    focal = -(pos * (1 - p) ** 2 * p.log() + (1 - pos) * (1 - t) ** 4 * p**2 * (1 - p).log())
    sel = torch.isin(tgt["index"], rows)
    local = torch.searchsorted(rows, tgt["index"][sel])
    gy, gx = tgt["cell"][sel].T
    n_obj = max(1, int(sel.sum()))
    l_size = (size[local, :, gy, gx] - tgt["size"][sel]).abs().sum() / n_obj
    l_off = (offset[local, :, gy, gx] - tgt["offset"][sel]).abs().sum() / n_obj
    return focal.sum() / n_obj + l_size + l_off


def detector_recall(
    detect: Any, scenes: list[SceneQuery], thresholds: tuple[float, ...] = (0.5, 0.7)
) -> dict[str, float]:
    """Share of the scenes' objects (and of their question targets) with a detected box
    at IoU >= each threshold, and the mean boxes per scene. ``detect(images)`` returns
    boxes per image."""
    found = detect([s.image for s in scenes])
    res: dict[str, float] = {"boxes_per_scene": sum(map(len, found)) / max(1, len(scenes))}
    for thr in thresholds:
        hit_obj = n_obj = hit_tgt = 0
        for scene, boxes in zip(scenes, found):
            for obj in scene.objects:
                hit_obj += any(iou(Box(*obj.box), b) >= thr for b in boxes)
                n_obj += 1
            hit_tgt += any(iou(Box(*scene.box), b) >= thr for b in boxes)
        res[f"object_recall@{thr}"] = hit_obj / max(1, n_obj)
        res[f"target_recall@{thr}"] = hit_tgt / max(1, len(scenes))
    return res


def train_detector(
    config: DetectorTrainingConfig, out: str | Path
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train a detector on generated scenes, save it (safetensors + ``.sha256``, the config
    and validation recall in the metadata) to ``out`` and return ``(net, record)``."""
    import torch

    from region_rerank.demo.detector import DemoBoxDetector
    from region_rerank.demo.tower import save_image_tower

    torch.manual_seed(config.seed)
    t0 = time.perf_counter()
    train = scene_mix("detector-train", config.n_train, config.seed)
    val = scene_mix("detector-val", config.n_val, config.seed)
    images = (to_input([s.image for s in train]) * 64).round().clamp(-128, 127).to(torch.int8)
    tgt = _targets(train)
    gen_s = time.perf_counter() - t0
    net = build_detector_net(config.width)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    steps = config.epochs * math.ceil(len(train) / config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=steps)
    gen = torch.Generator().manual_seed(config.seed)
    net.train()
    with progress_bar(total=steps, desc="detector") as bar:
        for epoch in range(config.epochs):
            total = 0.0
            order = torch.randperm(len(train), generator=gen)
            for start in range(0, len(train), config.batch_size):
                rows = order[start : start + config.batch_size].sort().values
                x = images[rows].float() / 64
                flip = bool(torch.rand(1, generator=gen) < 0.5)
                if flip:  # the targets are mirrored by flipping the outputs back
                    heat, size, off = (o.flip(-1) for o in net(x.flip(-1)))
                    pred = (heat, size, torch.stack([1 - off[:, 0], off[:, 1]], 1))
                else:
                    pred = net(x)
                loss = _loss(pred, tgt, rows)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                total += loss.item() * len(rows)
            logger.info("detector epoch %d: loss %.4f", epoch + 1, total / len(train))
    net.eval()
    train_s = time.perf_counter() - t0 - gen_s
    record: dict[str, Any] = {"config": asdict(config), "seconds": {"scenes": gen_s}}
    record["seconds"]["train"] = train_s
    out_path = Path(out)
    save_image_tower(net, out_path, record)
    metrics = detector_recall(DemoBoxDetector(out_path).detect, val)
    record["val"] = metrics
    save_image_tower(net, out_path, record)
    logger.info("detector saved to %s: %s", out_path, metrics)
    return net, record

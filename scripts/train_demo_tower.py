"""Train the demo world's image tower and write region_rerank/demo/weights/.

Usage: python scripts/train_demo_tower.py [--steps N] [--seed S] [--out PATH]
Reproducible from the seed; about 6-8 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import logging

from region_rerank.demo.tower import WEIGHTS_PATH
from region_rerank.demo.tower_training import TowerTrainingConfig, train_image_tower


def main() -> None:
    defaults = TowerTrainingConfig()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--out", default=str(WEIGHTS_PATH))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = TowerTrainingConfig(seed=args.seed, steps=args.steps, batch_size=args.batch_size)
    summary = train_image_tower(cfg, args.out)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

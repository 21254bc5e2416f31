"""Train the demo world's class-agnostic object detector and write
region_rerank/demo/weights/box_detector.safetensors (+ .sha256).

Usage: python scripts/train_demo_detector.py [--n-train N] [--epochs E] [--width W] [--out PATH]
Scenes of the training seed 0 only; reproducible from the seed. Prints the validation recall.
"""

from __future__ import annotations

import argparse
import json
import logging

from region_rerank.demo.detector import DETECTOR_WEIGHTS_PATH
from region_rerank.demo.detector_training import DetectorTrainingConfig, train_detector


def main() -> None:
    defaults = DetectorTrainingConfig()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-train", type=int, default=defaults.n_train)
    parser.add_argument("--n-val", type=int, default=defaults.n_val)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--out", default=str(DETECTOR_WEIGHTS_PATH))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = DetectorTrainingConfig(
        n_train=args.n_train, n_val=args.n_val, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, width=args.width,
    )  # fmt: skip
    _, record = train_detector(cfg, args.out)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

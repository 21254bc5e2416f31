"""Train the light proposal policy with r-GRPO and write its weights.

Usage:
    python scripts/train_proposal_policy.py [--world DIR] [--out DIR] [--weights PATH]
        [--epochs N] [--beta B] [--lr LR] [--group-size N] [--no-margin] [--unbalanced]
        [--seed S] [--max-seconds T]

Generates the synthetic world (seed 0: 1500 train / 200 val / 500 test queries) into
``--world`` (default ``--out/world``) when it is missing, embeds every proposal of every
train / val query once with the demo scorer (cached in ``--out``), trains, keeps the epoch
with the best validation reward, and writes the weights (default
``--out/proposal_policy.safetensors`` + ``.sha256``; pass ``--weights
region_rerank/demo/weights/proposal_policy.safetensors`` to replace the shipped ones), the
reward curve (``--out/reward_curve.png``) and ``--out/summary.json``. Seeded; about 4
minutes on 2 CPU cores (world ~40 s, features ~1.5 min, training ~1.2 min).
"""

from __future__ import annotations

import argparse
import json
import logging

from region_rerank.train.proposal_cli import add_proposal_arguments, run_proposal_training


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_proposal_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(json.dumps(run_proposal_training(args), indent=2))


if __name__ == "__main__":
    main()

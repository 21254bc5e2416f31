"""Does the demo text encoder itself know the held-out wording?

For every position, size and relation reference of the demo world, embeds its held-out
wording (``--phrasing heldout``: "the item farthest east", "the lowest item", ...) and all the
training families' wordings with the demo scorer's text tower (all-MiniLM-L6-v2), and
prints the training wording nearest to each held-out one (cosine) and whether it names the
same target. A held-out wording whose nearest neighbour names another target cannot be
understood by a policy that learned the training wordings through this encoder alone.

Usage:
    python scripts/heldout_wording_probe.py [--frame "What is the name of {ref}?"]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from region_rerank.demo.phrasing import FAMILIES, HELDOUT_FAMILIES, TRAIN_FAMILIES, RefSpec
from region_rerank.demo.text_tower import load_text_model

SPECS = (
    *(RefSpec("corner", c) for c in ("top-left", "top-right", "bottom-left", "bottom-right")),
    *(RefSpec("extreme", s) for s in ("left", "right", "top", "bottom")),
    *(RefSpec("size", s) for s in ("largest", "smallest")),
    *(RefSpec("relation", s, ("red", "circle")) for s in ("left", "right", "top", "bottom")),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frame", default="{ref}", help="question frame around each wording")
    args = ap.parse_args()
    train = [(s, r) for s in SPECS for f in TRAIN_FAMILIES for r in FAMILIES[f].refs(s)]
    held = [(s, r) for s in SPECS for f in HELDOUT_FAMILIES for r in FAMILIES[f].refs(s)]
    model = load_text_model()

    def embed(pairs: list[tuple[RefSpec, str]]) -> torch.Tensor:
        return F.normalize(
            model.encode([args.frame.format(ref=r) for _, r in pairs]).float(), dim=-1
        )

    sims = embed(held) @ embed(train).T
    right = 0
    print("| held-out wording | nearest training wording | same target |\n|---|---|---|")
    for i, (spec, ref) in enumerate(held):
        j = int(sims[i].argmax())
        same = train[j][0] == spec
        right += same
        print(f"| {ref} | {train[j][1]} | {'yes' if same else 'no'} |")
    print(f"{right} of {len(held)} held-out wordings are nearest to a wording of their own target")


if __name__ == "__main__":
    main()

"""Command-line options of the demo world's generator, shared by ``bench make``,
``bench quality`` and ``train proposal`` (argparse only; nothing is imported from
:mod:`region_rerank.demo` until a world is made)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_world_arguments", "world_overrides"]

#: CLI destination -> SceneConfig field.
_FIELDS = {
    "distractors": "distractors",
    "target_scale": "target_scale",
    "distractor_scale": "distractor_scale",
    "clutter": "clutter",
    "canvas": "canvas_size",
    "templates": "templates",
    "phrasing": "phrasing",
    "paraphrases": "paraphrases",
}


def _pair(kind: type) -> Any:
    def parse(text: str) -> tuple[Any, Any]:
        parts = text.replace(",", " ").split()
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"expected two values like '1,3', got {text!r}")
        return kind(parts[0]), kind(parts[1])

    return parse


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the scene options (all optional: the generator's defaults apply)."""
    parser.add_argument("--distractors", type=_pair(int), help="range, e.g. 1,3")
    parser.add_argument(
        "--target-scale", type=_pair(float), help="fraction of the canvas, e.g. 0.3,0.45"
    )
    parser.add_argument("--distractor-scale", type=_pair(float), help="e.g. 0.22,0.38")
    parser.add_argument("--clutter", type=float, help="background clutter level in [0, 1]")
    parser.add_argument("--canvas", type=_pair(int), help="canvas width,height, e.g. 224,224")
    parser.add_argument(
        "--templates", help="question-templates file (one per line, {ref} placeholder)"
    )
    parser.add_argument(
        "--phrasing",
        help="phrasing families: default (the original wording) | train (plain, synonyms, "
        "colloquial) | heldout, heldout2 (evaluation only) | comma-separated family names",
    )
    parser.add_argument(
        "--paraphrases",
        type=int,
        help="also write up to N other wordings of each question (field 'paraphrases'; "
        "for train proposal --resample-wording); scenes and questions unchanged",
    )
    parser.add_argument(
        "--balance-subtypes",
        action="store_true",
        help="as many smallest as largest questions, as many corner as side ones",
    )


def world_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The scene options given on the command line, as ``make_world`` keyword arguments."""
    out = {
        field: getattr(args, dest)
        for dest, field in _FIELDS.items()
        if getattr(args, dest, None) is not None
    }
    if getattr(args, "balance_subtypes", False):
        out["balance_subtypes"] = True
    return out

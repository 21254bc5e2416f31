"""Command line: ``region-rerank crop IMAGE --question ... --cropper ... --out out.png``.

Prints the crop decision (as text, or JSON with ``--json``) and writes the image with the
chosen box drawn.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from region_rerank.errors import RegionRerankError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``region-rerank`` command."""
    parser = argparse.ArgumentParser(
        prog="region-rerank",
        description="Query-side region cropping for multimodal RAG re-ranking.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True)
    crop = sub.add_parser("crop", help="decide FULL or REGION for one image + question")
    crop.add_argument("image", help="image path")
    crop.add_argument("--question", "-q", required=True, help="the question about the image")
    crop.add_argument(
        "--cropper",
        default="grounding",
        help="full | grounding[:MODEL] | vlm[:MODEL] | text_match (MODEL: hub id or local folder)",
    )
    crop.add_argument(
        "--scorer",
        default="clip",
        help="scorer for --cropper text_match: clip[:MODEL] | st:MODEL (default: clip)",
    )
    crop.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="grounding: detector score threshold; text_match: similarity margin",
    )
    crop.add_argument("--out", help="write the image with the box drawn to this path")
    crop.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    crop.add_argument("--json", action="store_true", help="print the decision as JSON")
    return parser


def _draw(image_path: str, decision: object, out: str) -> None:
    from PIL import ImageDraw

    from region_rerank.images import load_image

    image = load_image(image_path).copy()
    box = getattr(decision, "box", None)
    if box is not None:
        draw = ImageDraw.Draw(image)
        width = max(2, round(min(image.size) / 150))
        draw.rectangle(box.as_tuple(), outline=(255, 40, 40), width=width)
    image.save(out)


def _crop(args: argparse.Namespace) -> int:
    from region_rerank.factory import build_cropper, build_scorer
    from region_rerank.images import load_image
    from region_rerank.types import Query

    scorer = (
        build_scorer(args.scorer, args.device) if args.cropper.startswith("text_match") else None
    )
    cropper = build_cropper(args.cropper, args.device, scorer=scorer, threshold=args.threshold)
    image = load_image(args.image)
    decision = cropper.decide(Query(image=image, question=args.question, id=args.image))
    if args.json:
        print(json.dumps({**decision.to_dict(), "raw_output": decision.raw_output}))
    else:
        print(f"decision: {decision.action.value}")
        if decision.box is not None:
            x1, y1, x2, y2 = (round(v, 1) for v in decision.box.as_tuple())
            print(f"box: ({x1}, {y1}, {x2}, {y2})  area: {decision.area_fraction:.1%} of the image")
        if decision.reason:
            print(f"reason: {decision.reason}")
        if decision.raw_output:
            print(f"raw output: {decision.raw_output[:500]}")
    if args.out:
        _draw(args.image, decision, args.out)
        print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``region-rerank`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "crop":
            return _crop(args)
    except (RegionRerankError, ImportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

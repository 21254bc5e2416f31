"""The crop policy's text contract (docs/method.md section 3): the instruction that states it and
the parser that reads the answer back as FULL, REGION or malformed.

The policy answers with free text that ends in either the literal ``NO_CROP_NEEDED`` or one
Qwen-style tool call::

    <tool_call>{"name": "image_zoom_in_tool",
                "arguments": {"bbox_2d": [x1, y1, x2, y2]}}</tool_call>

:func:`parse_policy_output` is total: it never raises on any input and its work is bounded
(only the first :data:`MAX_SCAN_CHARS` characters are read, at most :data:`MAX_TOOL_CALLS`
tool calls are examined, every regular expression is linear). The rules, in order:

1. The first ``<tool_call>`` block (closed, or cut off at the end of the text) with four
   finite numbers in ``arguments.bbox_2d`` of its JSON (a call naming another tool is
   skipped) or, when its JSON does not decode, in a bare ``"bbox_2d": [...]`` -> REGION.
2. The literal ``NO_CROP_NEEDED`` anywhere -> FULL.
3. The first bare ``"bbox_2d": [a, b, c, d]`` with four finite numbers anywhere in the
   window (broken JSON outside a tool call, or a misnamed tool) -> REGION.
4. Crop intent (a ``<tool_call>`` tag, ``bbox_2d`` or the tool name) without a parseable
   four-number box -> malformed (the training reward of a malformed action is -1).
5. Anything else (prose only, empty text) -> FULL.

:func:`decision_from_output` then maps the raw coordinates from the model's frame to
original-image pixels with :func:`region_rerank.boxes.sanitize_box`; a malformed output or a
box that is invalid after conversion (inverted, zero-area, outside the image) becomes FULL
with a ``reason``, and the raw text is always kept. :func:`format_prompt` writes the
instruction that states this contract (:data:`DEFAULT_PROMPT`) for a given frame.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from region_rerank.boxes import CoordFrame, ensure_min_size, pad_box, sanitize_box
from region_rerank.errors import ConfigError
from region_rerank.types import CropDecision

__all__ = [
    "MAX_SCAN_CHARS",
    "MAX_TOOL_CALLS",
    "NO_CROP_TOKEN",
    "TOOL_NAME",
    "DEFAULT_PROMPT",
    "FRAME_INSTRUCTIONS",
    "check_prompt_template",
    "format_prompt",
    "ParsedOutput",
    "parse_policy_output",
    "decision_from_output",
]

#: Only this many leading characters of an output are read (a 256-token answer is ~1-2 K).
MAX_SCAN_CHARS = 16_384
#: At most this many ``<tool_call>`` blocks are examined.
MAX_TOOL_CALLS = 16
#: The literal answer meaning "keep the whole image".
NO_CROP_TOKEN = "NO_CROP_NEEDED"
#: The name of the zoom-in tool in the policy's tool call.
TOOL_NAME = "image_zoom_in_tool"

_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
_NUMBER = r"[-+]?(?:\d{1,64}(?:\.\d{0,64})?|\.\d{1,64})(?:[eE][-+]?\d{1,6})?"
_BARE_BBOX = re.compile(
    r"""["']?bbox_2d["']?\s{0,16}[:=]\s{0,16}[\[(]\s{0,16}"""
    rf"""["']?({_NUMBER})["']?\s{{0,16}},\s{{0,16}}["']?({_NUMBER})["']?\s{{0,16}},"""
    rf"""\s{{0,16}}["']?({_NUMBER})["']?\s{{0,16}},\s{{0,16}}["']?({_NUMBER})["']?\s{{0,16}}[\])]"""
)
_INTENT = re.compile(r"<tool_call>|bbox_2d|" + TOOL_NAME, re.IGNORECASE)

Coords = tuple[float, float, float, float]


#: The default instruction. ``{question}`` and ``{frame_instructions}`` are filled per query;
#: ``{width}`` and ``{height}`` (the extent of the frame's coordinate space) are available too.
DEFAULT_PROMPT = (
    "A search system will look up this image in an encyclopedia to answer a question about "
    "it. Decide whether it should look at the whole image or only at the part that shows "
    "what the question is about.\n"
    "Question: {question}\n\n"
    "If the whole image is needed (the question is about the entire scene, or the subject "
    "already fills the picture), answer with exactly NO_CROP_NEEDED and nothing else.\n"
    "Otherwise call the zoom tool exactly once, on the single region that contains the "
    "subject of the question, as the last thing you write:\n"
    '<tool_call>{{"name": "image_zoom_in_tool", "arguments": {{"bbox_2d": [x1, y1, x2, y2]}}}}'
    "</tool_call>\n"
    "{frame_instructions}"
)

_CORNERS = "(x1, y1) is the top-left and (x2, y2) the bottom-right corner of the region, "
#: How each coordinate frame is described to the model (``{width}``/``{height}`` filled in).
FRAME_INSTRUCTIONS: dict[CoordFrame, str] = {
    CoordFrame.QWEN25_RESIZED: _CORNERS + "in absolute pixels of the image as you see it "
    "({width} pixels wide, {height} pixels high).",
    CoordFrame.PIXELS: _CORNERS + "in absolute pixels of the image "
    "({width} pixels wide, {height} pixels high).",
    CoordFrame.NORM_1000: _CORNERS + "as integers from 0 to 1000 relative to the image "
    "width and height.",
    CoordFrame.NORM_1: _CORNERS + "as fractions from 0 to 1 of the image width and height.",
}


def check_prompt_template(template: str) -> None:
    """Raise :class:`ConfigError` unless ``template`` has ``{question}`` and formats cleanly."""
    if not isinstance(template, str) or "{question}" not in template:
        raise ConfigError("prompt_template must be a str containing the '{question}' placeholder")
    try:
        template.format(question="q", frame_instructions="f", width=1, height=1)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"prompt_template cannot be formatted ({exc!r}); allowed placeholders are "
            "{question}, {frame_instructions}, {width}, {height}; write literal braces as {{ }}"
        ) from exc


def format_prompt(
    question: str,
    frame: CoordFrame,
    coord_size: tuple[int, int],
    template: str | None = None,
) -> str:
    """The instruction for one query.

    Args:
        question: The user's question (inserted verbatim).
        frame: The frame the model should answer in (described by
            :data:`FRAME_INSTRUCTIONS`).
        coord_size: ``(width, height)`` of the image in that frame's units (the resized
            input for :attr:`CoordFrame.QWEN25_RESIZED`; ignored by the normalised frames).
        template: Defaults to :data:`DEFAULT_PROMPT`.
    """
    frame = CoordFrame(frame)
    width, height = {CoordFrame.NORM_1000: (1000, 1000), CoordFrame.NORM_1: (1, 1)}.get(
        frame, coord_size
    )
    return (template or DEFAULT_PROMPT).format(
        question=question,
        frame_instructions=FRAME_INSTRUCTIONS[frame].format(width=width, height=height),
        width=width,
        height=height,
    )


@dataclass(frozen=True)
class ParsedOutput:
    """What a policy output asked for.

    Attributes:
        kind: ``"full"`` (said ``NO_CROP_NEEDED`` or showed no crop intent), ``"region"``
            (a four-number box was found) or ``"malformed"`` (tried to crop, no usable box).
        coords: The raw ``(x1, y1, x2, y2)`` in the model's coordinate frame (``"region"``
            only). Finite, but not yet checked for order or range.
        reason: A short explanation for ``"full"`` and ``"malformed"``.
    """

    kind: Literal["full", "region", "malformed"]
    coords: Coords | None = None
    reason: str | None = None

    @property
    def wants_crop(self) -> bool:
        """True for ``"region"`` and ``"malformed"``: the model tried to crop."""
        return self.kind != "full"


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if len(value) > 80:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _four_numbers(value: Any) -> Coords | None:
    """Four finite numbers from ``[x1, y1, x2, y2]`` (or ``[[x1, y1, x2, y2]]``), else None."""
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], (list, tuple)):
        value = value[0]
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    numbers = [_to_float(v) for v in value]
    if any(n is None for n in numbers):
        return None
    x1, y1, x2, y2 = (float(n) for n in numbers if n is not None)
    return (x1, y1, x2, y2)


def _box_from_block(block: str) -> Coords | None:
    """The bbox of one tool-call body: from its JSON when that decodes to an object (a call
    of another tool gives None), else from a bare ``"bbox_2d": [...]`` in the body."""
    start = block.find("{")
    obj: Any = None
    if start >= 0:
        try:
            obj, _ = json.JSONDecoder().raw_decode(block, start)
        except (ValueError, RecursionError):
            obj = None
    if not isinstance(obj, dict):
        return _bare_box(block)
    name = obj.get("name")
    if name is not None and name != TOOL_NAME:
        return None
    args = obj.get("arguments", obj.get("parameters", obj))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):
            return _bare_box(args)
    if not isinstance(args, dict):
        return None
    return _four_numbers(args.get("bbox_2d"))


def _bare_box(text: str) -> Coords | None:
    """The first bare ``"bbox_2d": [a, b, c, d]`` whose four numbers are finite."""
    for match in _BARE_BBOX.finditer(text):
        box = _four_numbers(match.groups())
        if box is not None:
            return box
    return None


def _tool_call_blocks(text: str) -> list[str]:
    """Bodies of the first :data:`MAX_TOOL_CALLS` tool calls; an unclosed one runs to the end."""
    blocks: list[str] = []
    pos = 0
    while len(blocks) < MAX_TOOL_CALLS:
        start = text.find(_OPEN, pos)
        if start < 0:
            break
        body_start = start + len(_OPEN)
        end = text.find(_CLOSE, body_start)
        if end < 0:
            blocks.append(text[body_start:])
            break
        blocks.append(text[body_start:end])
        pos = end + len(_CLOSE)
    return blocks


def parse_policy_output(text: str) -> ParsedOutput:
    """Parse one policy output. Never raises; reads at most :data:`MAX_SCAN_CHARS` characters.

    Args:
        text: The generated text (anything else is treated as an output without a box).

    Returns:
        A :class:`ParsedOutput`; see the module docstring for the rules.

    Example:
        >>> parse_policy_output('<tool_call>{"name": "image_zoom_in_tool", '
        ...                     '"arguments": {"bbox_2d": [1, 2, 30, 40]}}</tool_call>').coords
        (1.0, 2.0, 30.0, 40.0)
        >>> parse_policy_output("The whole scene matters. NO_CROP_NEEDED").kind
        'full'
    """
    if not isinstance(text, str):
        return ParsedOutput("full", reason=f"output is {type(text).__name__}, not text")
    scanned = text[:MAX_SCAN_CHARS]
    for block in _tool_call_blocks(scanned):
        box = _box_from_block(block)
        if box is not None:
            return ParsedOutput("region", coords=box)
    if NO_CROP_TOKEN in scanned:
        return ParsedOutput("full", reason=NO_CROP_TOKEN)
    box = _bare_box(scanned)
    if box is not None:
        return ParsedOutput("region", coords=box)
    if _INTENT.search(scanned):
        return ParsedOutput(
            "malformed", reason="tried to crop but no parseable four-number bbox_2d was found"
        )
    if not scanned.strip():
        return ParsedOutput("full", reason="empty output")
    return ParsedOutput("full", reason="no crop requested")


def decision_from_output(
    text: str,
    image_size: tuple[int, int],
    frame: CoordFrame = CoordFrame.NORM_1000,
    resized_size: tuple[int, int] | None = None,
    min_size: float = 1.0,
    *,
    pad: float = 0.0,
    min_crop_size: float = 0.0,
    source: str = "vlm",
) -> CropDecision:
    """Turn a policy output into a :class:`CropDecision` in original-image pixels.

    Args:
        text: The generated text.
        image_size: ``(width, height)`` of the original image.
        frame: The frame the model's coordinates are in (see
            :class:`region_rerank.boxes.CoordFrame`).
        resized_size: ``(width, height)`` of the model input, for
            :attr:`CoordFrame.QWEN25_RESIZED`.
        min_size: A box narrower or shorter than this many original pixels after clamping
            is rejected (FULL).
        pad: Grow an accepted box by this fraction of its width/height on each side.
        min_crop_size: Then grow it around its centre to at least this many pixels per side.
        source: The decision's ``source``.

    Returns:
        REGION with a box inside the image, or FULL with ``reason`` set when the output said
        ``NO_CROP_NEEDED``, was malformed or held an invalid box. ``raw_output`` is ``text``.
        Never raises on any ``text``.
    """
    raw = text if isinstance(text, str) else repr(text)
    size = (int(image_size[0]), int(image_size[1]))
    parsed = parse_policy_output(text)
    common: dict[str, Any] = {"image_size": size, "raw_output": raw, "source": source}
    if parsed.kind == "full":
        return CropDecision.full(reason=parsed.reason, **common)
    if parsed.kind == "malformed" or parsed.coords is None:
        return CropDecision.full(reason=f"malformed output: {parsed.reason}", **common)
    box = sanitize_box(
        parsed.coords, size, frame=CoordFrame(frame), resized_size=resized_size, min_size=min_size
    )
    if box is None:
        return CropDecision.full(
            reason=f"invalid box {list(parsed.coords)} in frame {CoordFrame(frame).value} "
            f"for a {size[0]}x{size[1]} image (inverted, empty or too small after clamping)",
            **common,
        )
    if pad > 0:
        box = pad_box(box, size, pad)
    if min_crop_size > 0:
        box = ensure_min_size(box, size, min_crop_size)
    return CropDecision.region(box, **common)

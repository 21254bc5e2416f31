"""The bad-input matrix of tests/test_bad_inputs.py: every case names its input and the
outcome it must end in (a typed error or the documented fallback).

Each case builds, in a temporary folder, a query image, a question and a candidate pool, and
scripts the crop policy's raw text output. The cropper is :class:`PolicyTextCropper`, which
turns that text into a decision with the real parser of the VLM policies
(:func:`region_rerank.croppers.vlm_output.decision_from_output`), so box and policy-output
cases run through the same code as a real Qwen-VL policy's answer.
"""

from __future__ import annotations

import io
import random
import string
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from region_rerank.boxes import CoordFrame
from region_rerank.croppers.base import BaseCropper
from region_rerank.croppers.vlm_output import decision_from_output
from region_rerank.errors import (
    CandidateError,
    ImageLoadError,
    ImageTooLargeError,
    URLFetchDisabledError,
)
from region_rerank.images import ImageLoadOptions, load_image
from region_rerank.types import Box, Candidate, CropDecision, Query

__all__ = ["Case", "CASES", "PolicyTextCropper", "scene", "tool_call"]

W, H = 80, 40  # the scene: left quarter red (the target), the rest blue
TARGET_BOX = Box(0.0, 0.0, 20.0, 40.0)


def tool_call(box: Sequence[Any]) -> str:
    """The policy's answer asking to zoom into ``box`` (written verbatim into the JSON)."""
    coords = ", ".join(str(v) for v in box)
    return (
        '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": ['
        + coords
        + "]}}</tool_call>"
    )


#: The default answer: the left quarter in Qwen2-VL's 0..1000 frame.
GOOD_OUTPUT = tool_call([0, 0, 250, 1000])


class PolicyTextCropper(BaseCropper):
    """A crop policy whose raw answer is scripted; the decision comes from the real parser.

    Records the questions it was asked (to check question budgets and verbatim passing).
    """

    name = "policy-text"

    def __init__(self, output: str = GOOD_OUTPUT, frame: CoordFrame = CoordFrame.NORM_1000):
        self.output = output
        self.frame = frame
        self.questions: list[str] = []

    def decide_batch(self, queries: Sequence[Query]) -> list[CropDecision]:
        out = []
        for query in queries:
            self.questions.append(query.question)
            size = load_image(query.image).size
            out.append(decision_from_output(self.output, size, self.frame, source=self.name))
        return out


def scene() -> Image.Image:
    img = Image.new("RGB", (W, H), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, H))
    return img


def _encode(img: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bomb(width: int, height: int, *, with_data: bool) -> bytes:
    """A grey PNG of ``width x height`` zero pixels: a few hundred KB that decode to
    ``width * height`` bytes (``with_data=False``: the header alone, no pixel data)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    if with_data:
        comp = zlib.compressobj(9)
        row = b"\x00" * (width + 1)
        idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    else:
        idat = zlib.compress(b"")
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _write(tmp: Path, name: str, data: bytes) -> str:
    path = tmp / name
    path.write_bytes(data)
    return str(path)


def _exif_rotated(tmp: Path) -> str:
    """The scene stored rotated 90 degrees CCW with EXIF orientation 6 ("rotate 90 CW to
    display"): decoding must give the upright 80x40 scene."""
    stored = scene().transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _write(tmp, "rotated.jpg", _encode(stored, "JPEG", quality=95, exif=exif))


def _animated_gif() -> bytes:
    frames = [scene(), Image.new("RGB", (W, H), (0, 255, 0))]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)


def _cmyk_jpeg() -> bytes:
    return _encode(scene().convert("CMYK"), "JPEG", quality=95)


def _sixteen_bit_png() -> bytes:
    arr = (np.asarray(scene().convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    return _encode(Image.fromarray(arr), "PNG")


def _palette_transparent_png() -> bytes:
    img = scene().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    img.info["transparency"] = 3  # an unused index: the picture stays opaque
    return _encode(img, "PNG", transparency=3)


def _truncated_jpeg() -> bytes:
    data = _encode(Image.effect_noise((W, H), 60).convert("RGB"), "JPEG", quality=90)
    return data[: len(data) // 2]


def _garbage(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + " .,;:!?()[]{}\"'-_=+*/\\\n\t"
    return "".join(rng.choice(alphabet) for _ in range(n))


def default_pool(_: Path) -> list[Candidate]:
    return [
        Candidate("blue", "a blue building", retrieval_score=0.9),
        Candidate("red", "a red bridge", retrieval_score=0.1),
        Candidate("green", "a green tree", retrieval_score=0.5),
    ]


def _pool_with(*extra: Candidate) -> Callable[[Path], list[Candidate]]:
    return lambda tmp: [*default_pool(tmp), *extra]


def _mixed_pool(tmp: Path) -> list[Candidate]:
    red_png = _encode(Image.new("RGB", (16, 16), "red"), "PNG")
    green_file = tmp / "green.png"
    Image.new("RGB", (16, 16), "green").save(green_file)
    return [
        Candidate("text", "a blue building"),
        Candidate("bytes-image", images=red_png),
        Candidate("pil-and-text", "yellow", images=[Image.new("RGB", (8, 8), "yellow")]),
        Candidate("file-image", images=str(green_file)),
        Candidate("embedding", embedding=[1.0] + [0.0] * 26),
    ]


def _big_pool(_: Path) -> list[Candidate]:
    colours = ("red", "blue", "green", "yellow")
    return [Candidate(f"c{i}", f"a {colours[i % 4]} thing {i}") for i in range(10_000)]


def _duplicate_pool(_: Path) -> list[Candidate]:
    red = Candidate("red", "a red bridge")
    return [red, Candidate("blue", "a blue building"), red, Candidate("red", "a red bridge")]


BAD_PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 8


@dataclass(frozen=True)
class Case:
    """One bad input and the outcome it must end in.

    Attributes:
        name: The test id.
        image: Builds the query image in a temporary folder (default: the scene).
        question: The question.
        pool: Builds the candidates in a temporary folder.
        output: The policy's raw answer; ``frame`` its coordinate frame.
        decision: A decision passed to ``rerank`` instead of asking the cropper.
        options: Image decoding options of the reranker.
        outcome: ``"region"`` / ``"full"`` (a normal result with that decision), ``"ok"``
            (a normal result, any decision), ``"degraded"`` (fallback: original order, FULL,
            warning) or ``"raises"`` (a typed error in both modes).
        error: The error of a ``"degraded"`` case in raise mode, or of a ``"raises"`` case;
            for other outcomes, the error raise mode gives (``None``: same result).
        reason: A substring of the decision's reason (``"full"``) or of the error text.
        box: The exact box of a ``"region"`` outcome (``None``: any box inside the image).
        top: The candidate ids expected first, in order.
        last: Candidate ids expected last with score ``-inf``.
        log: A substring of the warning that must be logged (fallback mode).
        twins: Candidate id -> a clean candidate that must get exactly the same score
            (what a salvaged candidate is scored as).
        adapters: Also run through the LlamaIndex and LangChain adapters.
    """

    name: str
    image: Callable[[Path], Any] = lambda tmp: scene()
    question: Any = "when was the bridge built?"
    pool: Callable[[Path], list[Any]] = default_pool
    output: str = GOOD_OUTPUT
    frame: CoordFrame = CoordFrame.NORM_1000
    decision: CropDecision | None = None
    options: ImageLoadOptions = field(default_factory=ImageLoadOptions)
    outcome: str = "region"
    error: type[BaseException] | None = None
    reason: str | None = None
    box: Box | None = TARGET_BOX
    top: tuple[str, ...] = ("red",)
    last: tuple[str, ...] = ()
    log: str | None = None
    twins: dict[str, Candidate] = field(default_factory=dict)
    adapters: bool = True


def _degraded(name: str, image: Callable[[Path], Any], error: type[BaseException], **kw: Any):
    return Case(name, image=image, outcome="degraded", error=error, log="degraded", **kw)


CASES: list[Case] = [
    # ---------------------------------------------------------------- query images
    _degraded("image-missing-file", lambda t: str(t / "nope.png"), ImageLoadError),
    _degraded("image-missing-path-object", lambda t: t / "nope.jpg", ImageLoadError),
    _degraded("image-corrupt-bytes", lambda t: BAD_PNG_BYTES, ImageLoadError),
    _degraded("image-truncated-jpeg", lambda t: _truncated_jpeg(), ImageLoadError),
    _degraded("image-zero-byte-file", lambda t: _write(t, "empty.png", b""), ImageLoadError),
    _degraded("image-empty-bytes", lambda t: b"", ImageLoadError),
    _degraded("image-zero-size-array", lambda t: np.zeros((0, 10, 3), np.uint8), ImageLoadError),
    _degraded("image-nan-array", lambda t: np.full((8, 8, 3), np.nan), ImageLoadError),
    _degraded("image-unsupported-type", lambda t: 42, ImageLoadError),
    _degraded("image-base64-garbage", lambda t: "A" * 63 + "!" * 40, ImageLoadError),
    _degraded(
        "image-text-file-named-jpg",
        lambda t: _write(t, "photo.jpg", b"this is not a picture\n"),
        ImageLoadError,
    ),
    _degraded(
        "image-url-while-fetching-is-off",
        lambda t: "https://example.com/bridge.png",
        URLFetchDisabledError,
    ),
    _degraded(
        "image-decompression-bomb-header",
        lambda t: png_bomb(100_000, 100_000, with_data=False),
        ImageTooLargeError,
    ),
    _degraded(
        "image-decompression-bomb-64mpx",
        lambda t: png_bomb(8_000, 8_000, with_data=True),
        ImageTooLargeError,
    ),
    _degraded(
        "image-over-a-small-pixel-budget",
        lambda t: scene(),
        ImageTooLargeError,
        options=ImageLoadOptions(max_pixels=1_000),
    ),
    Case(
        "image-1x1",
        image=lambda t: Image.new("RGB", (1, 1), "red"),
        outcome="full",
        reason="invalid box",
        top=(),
    ),
    Case("image-extreme-wide", image=lambda t: Image.new("RGB", (4000, 1)), outcome="ok", top=()),
    Case("image-extreme-tall", image=lambda t: Image.new("RGB", (1, 4000)), outcome="ok", top=()),
    Case("image-16-bit-png", image=lambda t: _sixteen_bit_png(), top=()),
    Case("image-cmyk-jpeg", image=lambda t: _cmyk_jpeg()),
    Case("image-palette-with-transparency", image=lambda t: _palette_transparent_png()),
    Case("image-animated-gif-first-frame", image=lambda t: _animated_gif()),
    Case("image-exif-rotated-jpeg", image=_exif_rotated),
    # ---------------------------------------------------------------- policy output / boxes
    Case(
        "box-nan",
        output=tool_call(["NaN", 0, 250, 1000]),
        outcome="full",
        reason="malformed",
        top=("blue",),
    ),
    Case(
        "box-inf",
        output=tool_call([0, 0, "Infinity", 1000]),
        outcome="full",
        reason="malformed",
        top=("blue",),
    ),
    Case(
        "box-negative",
        output=tool_call([-500, -500, -100, -100]),
        outcome="full",
        reason="invalid box",
        top=("blue",),
    ),
    Case(
        "box-inverted",
        output=tool_call([250, 1000, 0, 0]),
        outcome="full",
        reason="invalid box",
        top=("blue",),
    ),
    Case("box-partly-out-of-range-is-clamped", output=tool_call([0, -300, 250, 5000])),
    Case(
        "box-entirely-out-of-range",
        output=tool_call([2000, 2000, 3000, 3000]),
        outcome="full",
        reason="invalid box",
        top=("blue",),
    ),
    Case(
        "box-zero-area",
        output=tool_call([100, 100, 100, 500]),
        outcome="full",
        reason="invalid",
        top=("blue",),
    ),
    Case(
        "box-wrong-frame-fractions-in-0-1000",
        output=tool_call([0, 0, 0.25, 1]),
        outcome="full",
        reason="invalid box",
        top=("blue",),
    ),
    Case(
        "box-wrong-frame-pixels-of-a-larger-image",
        output=tool_call([0, 0, 80, 160]),
        frame=CoordFrame.PIXELS,
        box=Box(0.0, 0.0, 80.0, 40.0),  # clamped: the whole image
        top=("blue",),
    ),
    Case(
        "decision-box-outside-the-image",
        decision=CropDecision.region(Box(100, 0, 200, 40), source="oracle"),
        outcome="full",
        reason="outside",
        top=("blue",),
    ),
    Case(
        "output-truncated-json",
        output=GOOD_OUTPUT[: GOOD_OUTPUT.index("250")],
        outcome="full",
        reason="malformed",
        top=("blue",),
    ),
    Case(
        "output-several-tool-calls-first-valid-wins",
        output=tool_call([1, 2]) + tool_call([0, 0, 250, 1000]) + tool_call([500, 0, 1000, 1000]),
    ),
    Case(
        "output-prose-only",
        output="The bridge is red and old.",
        outcome="full",
        reason="no crop",
        top=("blue",),
    ),
    Case("output-empty-string", output="", outcome="full", reason="empty", top=("blue",)),
    Case(
        "output-no-crop-needed",
        output="NO_CROP_NEEDED",
        outcome="full",
        reason="NO_CROP",
        top=("blue",),
    ),
    Case("output-100kb-garbage", output=_garbage(100_000), outcome="full", top=("blue",)),
    # ---------------------------------------------------------------- candidates
    Case("pool-empty", pool=lambda t: [], top=()),
    Case("pool-duplicates-kept", pool=_duplicate_pool, top=("red", "red", "red")),
    Case(
        "pool-candidate-without-text-or-image",
        pool=_pool_with(Candidate("void"), Candidate("blank", "   \n")),
        last=("void", "blank"),
        log="no text, image or embedding",
    ),
    Case("pool-mixed-content-types", pool=_mixed_pool, top=("bytes-image",)),
    Case(
        "pool-non-candidate-entry",
        pool=lambda t: [*default_pool(t), "a plain string"],
        outcome="raises",
        error=TypeError,
        reason="Candidate",
        adapters=False,  # hosts hand the adapters nodes / Documents, never raw strings
    ),
    Case("pool-10000-candidates", pool=_big_pool, top=()),
    Case(
        "pool-undecodable-image-keeps-text-score",
        pool=_pool_with(Candidate("broken", "a red car", images=BAD_PNG_BYTES)),
        twins={"broken": Candidate("twin", "a red car")},
        top=(),
        error=ImageLoadError,
        log="undecodable",
    ),
    Case(
        "pool-undecodable-image-without-text-ranked-last",
        pool=_pool_with(Candidate("broken", images=b"not an image at all")),
        last=("broken",),
        error=ImageLoadError,
        log="no decodable image",
    ),
    Case(
        "pool-candidate-url-image-while-fetching-is-off",
        pool=_pool_with(Candidate("url", "a red car", images="https://example.com/car.png")),
        twins={"url": Candidate("twin", "a red car")},
        top=(),
        error=URLFetchDisabledError,
        log="undecodable",
    ),
    Case(
        "pool-one-good-one-bad-image",
        pool=_pool_with(
            Candidate("mixed", images=[BAD_PNG_BYTES, Image.new("RGB", (8, 8), "red")])
        ),
        twins={"mixed": Candidate("twin", images=Image.new("RGB", (8, 8), "red"))},
        top=(),
        error=ImageLoadError,
        log="undecodable",
        adapters=False,  # a LlamaIndex node holds one image
    ),
    Case("pool-100kb-candidate-text", pool=_pool_with(Candidate("long", "blue " * 20_000))),
    Case(
        "pool-nan-precomputed-embedding",
        pool=_pool_with(Candidate("nan", embedding=[float("nan")] * 27)),
        outcome="degraded",
        error=CandidateError,
        reason="not finite",
        log="degraded",
        adapters=False,  # the adapters do not take precomputed embeddings
    ),
    # ---------------------------------------------------------------- questions
    Case("question-empty", question=""),
    Case("question-100kb-is-truncated", question="where? " * 15_000, log="truncated"),
    Case(
        "question-non-latin-scripts",
        question="这座桥是什么时候建造的\uff1f متى بُني هذا الجسر؟ 🌉 Когда построен мост?",
    ),
    Case("question-control-characters", question="when\x00 was\x1b[31m it\u202e built?\r\n\t\x7f"),
    Case("question-not-a-string", question=b"bytes", outcome="raises", error=TypeError, top=()),
]

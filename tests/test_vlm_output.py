"""The policy-output parser and the output -> decision mapping (no model needed)."""

from __future__ import annotations

import json
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from region_rerank.boxes import CoordFrame, qwen_smart_resize
from region_rerank.croppers.vlm_output import (
    MAX_SCAN_CHARS,
    MAX_TOOL_CALLS,
    NO_CROP_TOKEN,
    ParsedOutput,
    check_prompt_template,
    decision_from_output,
    format_prompt,
    parse_policy_output,
)
from region_rerank.errors import ConfigError
from region_rerank.types import Box, CropAction, CropDecision


def tool_call(box: object, name: str = "image_zoom_in_tool") -> str:
    payload = {"name": name, "arguments": {"bbox_2d": box}}
    return f"<tool_call>{json.dumps(payload)}</tool_call>"


# ------------------------------------------------------------------------ parser
def test_tool_call_json_gives_region() -> None:
    text = "The question is about the tower on the left.\n" + tool_call([10, 20.5, 300, 400])
    parsed = parse_policy_output(text)
    assert parsed == ParsedOutput("region", coords=(10.0, 20.5, 300.0, 400.0))
    assert parsed.wants_crop


def test_tool_call_with_whitespace_and_string_arguments() -> None:
    text = (
        '<tool_call>\n  {"name": "image_zoom_in_tool",\n "arguments": '
        '"{\\"bbox_2d\\": [1, 2, 3, 4]}"}\n</tool_call>'
    )
    assert parse_policy_output(text).coords == (1.0, 2.0, 3.0, 4.0)


def test_bare_bbox_fallback_when_json_is_broken() -> None:
    text = 'I will zoom. {"name": image_zoom_in_tool, "arguments": {"bbox_2d": [5, 6, 70, 80]'
    assert parse_policy_output(text) == ParsedOutput("region", coords=(5.0, 6.0, 70.0, 80.0))


def test_broken_json_inside_tool_call_falls_back_to_regex() -> None:
    text = "<tool_call>{'name': 'image_zoom_in_tool', 'arguments': {'bbox_2d': [1, 2, 3, 4]}}"
    assert parse_policy_output(text).coords == (1.0, 2.0, 3.0, 4.0)


def test_truncated_json_is_malformed() -> None:
    text = '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [10, 20, 3'
    parsed = parse_policy_output(text)
    assert parsed.kind == "malformed"
    assert parsed.coords is None
    assert parsed.wants_crop


def test_no_crop_needed_is_full() -> None:
    parsed = parse_policy_output("The whole building is the subject.\nNO_CROP_NEEDED")
    assert parsed == ParsedOutput("full", reason=NO_CROP_TOKEN)
    assert not parsed.wants_crop


def test_no_crop_needed_with_broken_tool_call_is_full() -> None:
    assert parse_policy_output("NO_CROP_NEEDED <tool_call>{oops").kind == "full"


def test_valid_tool_call_wins_over_prose_mention_of_no_crop() -> None:
    text = "Not NO_CROP_NEEDED here. " + tool_call([1, 1, 9, 9])
    assert parse_policy_output(text).coords == (1.0, 1.0, 9.0, 9.0)


@pytest.mark.parametrize("text", ["", "   \n\t", "A red car on a street.", "bbox", "[1, 2, 3, 4]"])
def test_prose_and_empty_text_are_full(text: str) -> None:
    parsed = parse_policy_output(text)
    assert parsed.kind == "full"
    assert parsed.coords is None
    assert parsed.reason


def test_non_string_input_is_full_not_an_error() -> None:
    assert parse_policy_output(None).kind == "full"  # type: ignore[arg-type]
    assert parse_policy_output(b"bytes").kind == "full"  # type: ignore[arg-type]


def test_several_tool_calls_take_the_first_valid_one() -> None:
    text = (
        tool_call([1, 2, 3])  # three numbers
        + tool_call([1, 2, 3, 4], name="other_tool")  # another tool
        + tool_call(["NaN", 2, 3, 4])  # not finite
        + tool_call([11, 12, 13, 14])
        + tool_call([21, 22, 23, 24])
    )
    assert parse_policy_output(text).coords == (11.0, 12.0, 13.0, 14.0)


def test_box_after_many_bad_tool_calls_is_still_found_by_the_fallback() -> None:
    # Only MAX_TOOL_CALLS blocks are decoded as JSON; the bare-bbox fallback still scans the
    # rest of the window.
    text = tool_call([1, 2]) * (MAX_TOOL_CALLS + 5) + tool_call([5, 6, 7, 8])
    assert len(text) < MAX_SCAN_CHARS
    assert parse_policy_output(text).coords == (5.0, 6.0, 7.0, 8.0)


@pytest.mark.parametrize(
    "box",
    [
        "[NaN, 1, 2, 3]",
        "[1, Infinity, 2, 3]",
        "[1, 2, -Infinity, 3]",
        "[1e999, 2, 3, 4]",
        "[1, 2, 3]",
        "[1, 2, 3, 4, 5]",
        '"1, 2, 3, 4"',
        "[true, 2, 3, 4]",
        "[null, 2, 3, 4]",
        "[[1, 2], [3, 4]]",
        "{}",
    ],
)
def test_unusable_boxes_are_malformed(box: str) -> None:
    text = '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": ' + box + "}}"
    parsed = parse_policy_output(text + "</tool_call>")
    assert parsed.kind == "malformed", box


def test_nested_single_box_and_numeric_strings_are_accepted() -> None:
    assert parse_policy_output(tool_call([[1, 2, 3, 4]])).coords == (1.0, 2.0, 3.0, 4.0)
    assert parse_policy_output(tool_call(["1", "2.5", "3e1", 4])).coords == (1.0, 2.5, 30.0, 4.0)


def test_huge_integer_does_not_raise() -> None:
    text = '"bbox_2d": [' + "9" * 5000 + ", 1, 2, 3]"
    assert parse_policy_output(text).kind == "malformed"
    text = tool_call([1, 2, 3, 4]).replace("[1,", "[" + "9" * 5000 + ",")
    assert parse_policy_output(text).kind == "malformed"


def test_deeply_nested_junk_does_not_raise() -> None:
    text = "<tool_call>" + '{"a": ' * 5000 + "[" * 5000
    assert parse_policy_output(text).kind == "malformed"
    assert parse_policy_output("{" * 50_000).kind == "full"


def test_control_characters_do_not_raise() -> None:
    text = "\x00\x01\x1b[31m\ud800" + tool_call([1, 2, 3, 4]) + "\x7f\u2028"
    assert parse_policy_output(text).coords == (1.0, 2.0, 3.0, 4.0)


def test_100kb_garbage_is_bounded_and_ignores_text_after_the_scan_window() -> None:
    garbage = "<tool_call>{[" * 8000 + '"bbox_2d": [' * 1000
    assert len(garbage) > 100_000
    start = time.perf_counter()
    parsed = parse_policy_output(garbage + tool_call([1, 2, 3, 4]))
    assert time.perf_counter() - start < 1.0
    assert parsed.kind == "malformed"  # the valid call lies beyond MAX_SCAN_CHARS
    beyond = parse_policy_output("x" * MAX_SCAN_CHARS + NO_CROP_TOKEN)
    assert beyond == ParsedOutput("full", reason="no crop requested")
    assert parse_policy_output("x" * (MAX_SCAN_CHARS - 200) + tool_call([1, 2, 3, 4])).kind == (
        "region"
    )


# -------------------------------------------------------------- output -> decision
def test_decision_norm_1000_hand_computed() -> None:
    # 640x480 image; 0..1000 frame: x * 0.64, y * 0.48
    d = decision_from_output(tool_call([250, 500, 750, 1000]), (640, 480), CoordFrame.NORM_1000)
    assert d.action is CropAction.REGION
    assert d.box == Box(160.0, 240.0, 480.0, 480.0)
    assert d.image_size == (640, 480)
    assert d.source == "vlm"
    assert d.raw_output == tool_call([250, 500, 750, 1000])


def test_decision_qwen25_resized_hand_computed() -> None:
    # 1000x600 image, Qwen2.5 defaults (factor 28, 3136..1003520 pixels):
    # height round(600/28)=21 -> 588, width round(1000/28)=36 -> 1008.
    assert qwen_smart_resize(600, 1000) == (588, 1008)
    d = decision_from_output(
        tool_call([100.8, 58.8, 504, 294]),
        (1000, 600),
        CoordFrame.QWEN25_RESIZED,
        resized_size=(1008, 588),
    )
    assert d.box is not None
    assert d.box.as_tuple() == pytest.approx((100.0, 60.0, 500.0, 300.0))


def test_decision_qwen25_with_max_pixels_downscale_hand_computed() -> None:
    # 4000x3000 with max_pixels 1003520: beta = sqrt(12e6 / 1003520) = 3.4580...,
    # height floor(3000/beta/28)*28 = 840, width floor(4000/beta/28)*28 = 1148.
    assert qwen_smart_resize(3000, 4000) == (840, 1148)
    d = decision_from_output(
        tool_call([0, 0, 574, 420]), (4000, 3000), CoordFrame.QWEN25_RESIZED, (1148, 840)
    )
    assert d.box is not None
    assert d.box.as_tuple() == pytest.approx((0.0, 0.0, 2000.0, 1500.0))


def test_decision_clamps_out_of_range_boxes() -> None:
    d = decision_from_output(tool_call([-50, -10, 2000, 1200]), (640, 480), CoordFrame.PIXELS)
    assert d.box == Box(0.0, 0.0, 640.0, 480.0)


@pytest.mark.parametrize(
    ("box", "why"),
    [
        ([300, 200, 100, 400], "inverted"),
        ([100, 100, 100, 300], "zero area"),
        ([700, 10, 900, 50], "outside the image"),
        ([-20, -20, -1, -1], "outside the image"),
        ([10, 10, 10.5, 200], "thinner than min_size"),
    ],
)
def test_invalid_boxes_become_full_with_reason(box: list[float], why: str) -> None:
    text = tool_call(box)
    d = decision_from_output(text, (640, 480), CoordFrame.PIXELS, min_size=1.0)
    assert d.action is CropAction.FULL, why
    assert d.box is None
    assert d.reason and "invalid box" in d.reason
    assert d.raw_output == text


def test_malformed_and_no_crop_decisions_keep_raw_output() -> None:
    bad = decision_from_output("<tool_call>{broken", (64, 48))
    assert bad.action is CropAction.FULL and bad.reason and bad.reason.startswith("malformed")
    assert bad.raw_output == "<tool_call>{broken"
    none = decision_from_output("NO_CROP_NEEDED", (64, 48))
    assert none.action is CropAction.FULL and none.reason == NO_CROP_TOKEN


def test_pad_and_min_crop_size_stay_inside_the_image() -> None:
    d = decision_from_output(
        tool_call([10, 10, 20, 20]), (100, 50), CoordFrame.PIXELS, pad=0.5, min_crop_size=40
    )
    assert d.box is not None
    # padded to (5, 5, 25, 25), then grown to 40x40 around (15, 15) and shifted inside
    assert d.box.as_tuple() == pytest.approx((0.0, 0.0, 40.0, 40.0))


# ------------------------------------------------------------------------ fuzzing
_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0", "abc", ""]),
)


@st.composite
def policy_texts(draw: st.DrawFn) -> str:
    """Random mixtures of prose, tool calls (valid or not), bare boxes and junk."""
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["prose", "call", "bare", "junk", "token", "cut"]))
        nums = draw(st.lists(_numbers, min_size=0, max_size=6))
        body = "[" + ", ".join(str(n) for n in nums) + "]"
        if kind == "prose":
            parts.append(draw(st.text(max_size=40)))
        elif kind == "call":
            parts.append(
                '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": '
                + body
                + "}}</tool_call>"
            )
        elif kind == "bare":
            parts.append('"bbox_2d": ' + body)
        elif kind == "junk":
            parts.append(draw(st.text(alphabet="<>{}[]\"':,tool_call/bbox_2d0123456789.-eE")))
        elif kind == "token":
            parts.append(NO_CROP_TOKEN)
        else:
            call = '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": ' + body
            parts.append(call[: draw(st.integers(0, len(call)))])
    return "".join(parts)


_sizes = st.tuples(st.integers(1, 5000), st.integers(1, 5000))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(), policy_texts()))
def test_parser_never_raises(text: str) -> None:
    parsed = parse_policy_output(text)
    assert parsed.kind in ("full", "region", "malformed")
    if parsed.kind == "region":
        assert parsed.coords is not None and len(parsed.coords) == 4
        assert all(math.isfinite(c) for c in parsed.coords)
    else:
        assert parsed.coords is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(st.text(), policy_texts()),
    size=_sizes,
    resized=_sizes,
    frame=st.sampled_from(list(CoordFrame)),
    pad=st.floats(0, 2),
    min_crop=st.floats(0, 100),
)
def test_every_region_lies_inside_the_image(
    text: str,
    size: tuple[int, int],
    resized: tuple[int, int],
    frame: CoordFrame,
    pad: float,
    min_crop: float,
) -> None:
    d = decision_from_output(
        text, size, frame, resized_size=resized, pad=pad, min_crop_size=min_crop
    )
    assert isinstance(d, CropDecision)
    assert d.raw_output == text
    w, h = size
    if d.action is CropAction.REGION:
        assert d.box is not None
        assert 0 <= d.box.x1 < d.box.x2 <= w
        assert 0 <= d.box.y1 < d.box.y2 <= h
    else:
        assert d.box is None and d.reason


@settings(max_examples=200, deadline=None)
@given(
    box=st.tuples(*[st.floats(-1e6, 1e6, allow_nan=False)] * 4),
    size=_sizes,
)
def test_valid_pixel_boxes_round_trip(box: tuple[float, ...], size: tuple[int, int]) -> None:
    x1, y1, x2, y2 = box
    d = decision_from_output(tool_call([x1, y1, x2, y2]), size, CoordFrame.PIXELS, min_size=0.0)
    w, h = size
    cx1, cx2 = max(0.0, x1), min(float(w), x2)
    cy1, cy2 = max(0.0, y1), min(float(h), y2)
    if x2 > x1 and y2 > y1 and cx2 > cx1 and cy2 > cy1:
        assert d.box is not None
        assert d.box.as_tuple() == pytest.approx((cx1, cy1, cx2, cy2))
    else:
        assert d.action is CropAction.FULL


# ------------------------------------------------------------------------ prompt
def test_format_prompt_states_the_contract_for_each_frame() -> None:
    expected = {
        CoordFrame.QWEN25_RESIZED: "(644 pixels wide, 476 pixels high)",
        CoordFrame.PIXELS: "(644 pixels wide, 476 pixels high)",
        CoordFrame.NORM_1000: "from 0 to 1000",
        CoordFrame.NORM_1: "from 0 to 1",
    }
    for frame, phrase in expected.items():
        prompt = format_prompt("Which bridge is this?", frame, (644, 476))
        assert "Which bridge is this?" in prompt and NO_CROP_TOKEN in prompt
        assert '{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [x1, y1, x2, y2]}}' in (
            prompt
        )
        assert phrase in prompt
    custom = format_prompt("q?", CoordFrame.NORM_1000, (5, 5), "{question}|{width}x{height}")
    assert custom == "q?|1000x1000"


def test_prompt_questions_with_braces_are_inserted_verbatim() -> None:
    prompt = format_prompt("what is {this}?", CoordFrame.NORM_1000, (10, 10))
    assert "what is {this}?" in prompt


@pytest.mark.parametrize("template", ["no question", "{question} {other}", "{question} {", 42])
def test_bad_prompt_templates_are_refused(template: object) -> None:
    with pytest.raises(ConfigError, match="prompt_template"):
        check_prompt_template(template)  # type: ignore[arg-type]


def test_importing_the_croppers_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, region_rerank.croppers.vlm, region_rerank.croppers.vlm_output; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from region_rerank.cli import main


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), "navy").save(path)
    return path


def test_crop_full_prints_decision_and_writes_image(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "boxed.png"
    code = main(["crop", str(photo), "--question", "what?", "--cropper", "full", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "decision: FULL" in printed and f"wrote {out}" in printed
    assert Image.open(out).size == (64, 48)


def test_crop_json(photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crop", str(photo), "-q", "what?", "--cropper", "full", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["action"] == "FULL" and payload["box"] is None and payload["source"] == "full"


def test_errors_exit_2_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crop", str(tmp_path / "nope.png"), "-q", "x", "--cropper", "full"]) == 2
    assert "image file not found" in capsys.readouterr().err
    assert main(["crop", str(tmp_path / "nope.png"), "-q", "x", "--cropper", "bogus"]) == 2
    assert "unknown cropper" in capsys.readouterr().err


def test_console_script_entry_point(photo: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "region_rerank.cli",
            "crop",
            str(photo),
            "-q",
            "x",
            "--cropper",
            "full",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "decision: FULL" in out.stdout


@pytest.fixture(scope="module")
def tiny_owlv2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny.detectors import build_owlv2

    return build_owlv2(tmp_path_factory.mktemp("cli_owlv2") / "owlv2")


def test_crop_grounding_draws_the_box(
    tiny_owlv2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.tiny.clip_models import smooth_image

    photo = tmp_path / "scene.png"
    smooth_image(120, 80, seed=3).save(photo)
    out = tmp_path / "boxed.png"
    argv = [
        "crop",
        str(photo),
        "-q",
        "when was this bridge built?",
        "--cropper",
        f"grounding:{tiny_owlv2}",
        "--threshold",
        "0.0",
        "--out",
        str(out),
        "--json",
    ]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out.splitlines()[0])
    assert payload["action"] == "REGION" and payload["source"] == "grounding"
    x1, y1, x2, y2 = payload["box"]
    assert 0 <= x1 < x2 <= 120 and 0 <= y1 < y2 <= 80
    drawn, original = Image.open(out).convert("RGB"), Image.open(photo).convert("RGB")
    edge = (min(round(x1), 119), min(round(y1), 79))
    assert drawn.getpixel(edge) == (255, 40, 40) != original.getpixel(edge)


def test_crop_text_match_with_a_clip_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.tiny.clip_models import build_tiny_clip, smooth_image

    folder = build_tiny_clip(tmp_path / "clip")
    photo = tmp_path / "scene.png"
    smooth_image(90, 60, seed=4).save(photo)
    argv = [
        "crop",
        str(photo),
        "-q",
        "the red car",
        "--cropper",
        "text_match",
        "--scorer",
        f"clip:{folder}",
        "--threshold",
        "-2",
        "--json",
    ]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["action"] == "REGION" and payload["source"] == "text_match"


def test_crop_vlm_prints_raw_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.tiny.clip_models import smooth_image
    from tests.tiny.qwen import build_tiny_qwen

    folder = build_tiny_qwen("qwen2_5_vl", tmp_path / "qwen")
    photo = tmp_path / "scene.png"
    smooth_image(84, 56, seed=5).save(photo)
    assert (
        main(["crop", str(photo), "-q", "what is it?", "--cropper", f"vlm:{folder}", "--json"]) == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["source"] == "vlm" and isinstance(payload["raw_output"], str)
    if payload["action"] == "REGION":  # a random policy rarely emits a parseable box
        x1, y1, x2, y2 = payload["box"]
        assert 0 <= x1 < x2 <= 84 and 0 <= y1 < y2 <= 56
    else:  # the documented fallback: FULL with the reason
        assert payload["action"] == "FULL" and payload["reason"]


def test_train_proposal_command_is_wired() -> None:
    from region_rerank.cli import build_parser

    args = build_parser().parse_args(
        ["train", "proposal", "--world", "w", "--out", "o", "--epochs", "3", "--no-margin"]
    )
    assert (args.command, args.train_command) == ("train", "proposal")
    assert (args.world, args.out, args.epochs, args.no_margin, args.unbalanced) == (
        "w",
        "o",
        3,
        True,
        False,
    )

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

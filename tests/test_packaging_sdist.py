"""The source distribution: license metadata, and every tracked file the tests, the README's
commands and CI use is inside it (so the tests can run from an unpacked sdist)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the list of tracked files is unknown")
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if line]


def test_license_is_an_spdx_string_with_its_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]


def test_sdist_holds_every_tracked_file(tmp_path: Path) -> None:
    tracked = _tracked_files()
    # Build from a copy of the tracked files only, so local build leftovers cannot leak in.
    src = tmp_path / "src"
    for name in tracked:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    code = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "dist")],
        cwd=src,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    name = out.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / "dist" / name) as tar:
        members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
    # .gitignore is for the repository only; everything else must ship.
    missing = sorted(set(tracked) - members - {".gitignore"})
    assert not missing, missing
    assert "LICENSE" in members
    assert not any("__pycache__" in m for m in members)

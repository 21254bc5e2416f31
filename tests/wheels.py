"""Test helpers that build the project's wheel and fresh virtual environments (offline)."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(out_dir: Path) -> Path:
    """Build the region-rerank wheel (no dependencies, no build isolation) into ``out_dir``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out_dir),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(out_dir.glob("region_rerank-*.whl"))


def fresh_venv(path: Path) -> str:
    """Create a virtual environment with pip at ``path``; return its python executable."""
    venv.EnvBuilder(with_pip=True).create(path)
    return str(path / "bin" / "python")

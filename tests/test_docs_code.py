"""Every Python block of the README and the docs site runs, and every ``region-rerank``
command line they show is accepted by the CLI's own parser.

Hub model ids in the blocks are replaced by tiny random models of the same architecture,
built here (no hub is reachable in tests); image paths the blocks name are created as
small generated images in a scratch working directory. Nothing else in a block is changed.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from region_rerank.cli import build_parser
from tests.docs_blocks import Block, blocks, command_lines, pages
from tests.tiny.clip_models import build_tiny_clip, smooth_image
from tests.tiny.detectors import build_owlv2
from tests.tiny.qwen import build_tiny_qwen

ALL_BLOCKS = [b for page in pages() for b in blocks(page)]
PYTHON = [b for b in ALL_BLOCKS if b.lang == "python"]
SHELL = [b for b in ALL_BLOCKS if b.lang in ("bash", "sh", "shell", "console")]
_IMAGE_PATH = re.compile(r"[\"']([\w./-]+\.(?:jpg|jpeg|png))[\"']")


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Hub id -> a tiny local model of the same architecture."""
    root = tmp_path_factory.mktemp("docs_models")
    clip = str(build_tiny_clip(root / "clip"))
    return {
        "google/owlv2-base-patch16-ensemble": str(build_owlv2(root / "owlv2")),
        "openai/clip-vit-large-patch14": clip,
        "openai/clip-vit-base-patch32": clip,
        "Qwen/Qwen2.5-VL-3B-Instruct": str(build_tiny_qwen("qwen2_5_vl", root / "qwen")),
    }


def _llamaindex_settings(ns: dict[str, Any], models: dict[str, str]) -> Iterator[None]:
    from llama_index.core import Settings
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM

    old = Settings._embed_model, Settings._llm
    Settings.embed_model = MockEmbedding(embed_dim=8)
    Settings.llm = MockLLM()
    yield
    Settings._embed_model, Settings._llm = old


def _langchain_store(ns: dict[str, Any], models: dict[str, str]) -> Iterator[None]:
    from langchain_core.documents import Document
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=8))
    docs = []
    for i in range(4):
        buf = io.BytesIO()
        smooth_image(48, 48, seed=i).save(buf, format="PNG")
        image = base64.b64encode(buf.getvalue()).decode()
        docs.append(Document(f"entry {i}", metadata={"image": image}))
    store.add_documents(docs)
    ns["vector_store"] = store
    yield


def _vlm_adapter(ns: dict[str, Any], models: dict[str, str]) -> Iterator[None]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(models["Qwen/Qwen2.5-VL-3B-Instruct"])
    lora = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1, target_modules="all-linear")
    get_peft_model(model, lora).save_pretrained("out/vlm_policy/adapter")
    yield


def _demo_world(ns: dict[str, Any], models: dict[str, str]) -> Iterator[None]:
    from region_rerank.demo.world import make_world

    make_world("world", n_train=0, n_val=0, n_test=4, n_entities=40, kb_images=1)
    yield


def _own_policy(ns: dict[str, Any], models: dict[str, str]) -> Iterator[None]:
    """What ``train proposal --out out/my_policy --scorer clip:MODEL`` leaves (untrained
    weights of the same shape, recording a tiny CLIP as the scorer)."""
    from region_rerank import ClipScorer
    from region_rerank.croppers.proposal import PolicyArch, build_policy_net, save_proposal_policy

    clip = models["openai/clip-vit-base-patch32"]
    arch = PolicyArch(dim=int(ClipScorer(clip).embed_texts(["a"]).shape[1]), scorer=f"clip:{clip}")
    save_proposal_policy(build_policy_net(arch), arch, "out/my_policy/proposal_policy.safetensors")
    yield


SETUPS: dict[str, Callable[[dict[str, Any], dict[str, str]], Iterator[None]]] = {
    "llamaindex-settings": _llamaindex_settings,
    "langchain-store": _langchain_store,
    "vlm-adapter": _vlm_adapter,
    "demo-world": _demo_world,
    "own-policy": _own_policy,
}


def test_the_pages_have_python_blocks_and_known_setups() -> None:
    assert len(PYTHON) >= 6, [b.where for b in PYTHON]
    for block in ALL_BLOCKS:
        assert set(block.setups) <= set(SETUPS), (block.where, block.setups)
        assert not block.setups or block.lang == "python", block.where


@pytest.mark.parametrize("block", PYTHON, ids=[b.where for b in PYTHON])
def test_python_block_runs(
    block: Block,
    stand_ins: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code = block.code
    for hub_id, local in stand_ins.items():
        code = code.replace(hub_id, local)
    for i, name in enumerate(sorted(set(_IMAGE_PATH.findall(code)))):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        smooth_image(96, 64, seed=i).convert("RGB").save(name)
    ns: dict[str, Any] = {"__name__": "__docs__"}
    setups = [SETUPS[name](ns, stand_ins) for name in block.setups]
    for setup in setups:
        next(setup)
    try:
        exec(compile(code, block.where, "exec"), ns)
    finally:
        for setup in setups:
            next(setup, None)
    assert os.getcwd() == str(tmp_path)  # the block ran here and wrote only here


@pytest.mark.parametrize("block", SHELL, ids=[b.where for b in SHELL])
def test_shell_block_commands_parse(block: Block) -> None:
    parser = build_parser()
    for argv in command_lines(block.code):
        try:
            parser.parse_args(argv)
        except SystemExit as exc:  # argparse's way of refusing
            pytest.fail(f"{block.where}: `region-rerank {' '.join(argv)}` is refused ({exc})")


def test_a_wrong_command_would_be_caught() -> None:
    """The check above can fail: an unknown option is refused by the same parser."""
    (argv,) = command_lines("region-rerank demo --no-such-option 3\n")
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)

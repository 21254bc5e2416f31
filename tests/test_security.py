"""Safe loading and confinement: trust_remote_code off by default (warning when on),
safetensors-only weights unless the caller opts in to pickles, no network access when only
local folders are used, and eval / training writing only under the output folder given."""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from region_rerank.errors import UnsafeWeightsError
from region_rerank.model_options import ModelOptions

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "integrations")])
    env["TQDM_DISABLE"] = "1"
    env.update(extra)
    return env


def _pickle_only_copy(folder: Path, dest: Path) -> Path:
    """``folder`` with every ``model.safetensors`` replaced by a pickled ``pytorch_model.bin``
    holding the same tensors (what an old or untrusted repository ships)."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(folder, dest)
    for weights in dest.rglob("model.safetensors"):
        torch.save(load_file(weights), weights.with_name("pytorch_model.bin"))
        weights.unlink()
    return dest


def test_trust_remote_code_is_off_by_default_everywhere() -> None:
    from region_rerank import (
        ClipScorer,
        CrossEncoderScorer,
        DemoScorer,
        GroundingCropper,
        GroundingCropperConfig,
        ProposalPolicyCropper,
        SentenceTransformerScorer,
        VLMCropper,
        VLMCropperConfig,
    )

    assert ModelOptions().trust_remote_code is False and ModelOptions().allow_pickle is False
    for cls in (
        ClipScorer,
        SentenceTransformerScorer,
        CrossEncoderScorer,
        VLMCropper,
        GroundingCropper,
        ProposalPolicyCropper,
        DemoScorer,
    ):
        params = inspect.signature(cls.__init__).parameters
        assert params["model_options"].default is None, cls.__name__
        assert not {"trust_remote_code", "allow_pickle", "device", "dtype"} & set(params)
    for config in (VLMCropperConfig, GroundingCropperConfig):
        assert not {"trust_remote_code", "allow_pickle", "device", "dtype"} & set(
            config.__dataclass_fields__
        ), config.__name__


@pytest.mark.parametrize("cls_name", ["SentenceTransformerScorer", "CrossEncoderScorer"])
def test_trust_remote_code_logs_a_warning_for_sentence_transformers(
    cls_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    import region_rerank

    cls = getattr(region_rerank, cls_name)
    with caplog.at_level(logging.WARNING):
        cls("some/model", model_options=ModelOptions(trust_remote_code=True))  # lazy
    assert any("trust_remote_code=True" in r.getMessage() for r in caplog.records)


@pytest.fixture(scope="module")
def clip_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.tiny.clip_models import build_tiny_clip

    root = tmp_path_factory.mktemp("security_clip")
    safe = build_tiny_clip(root / "safe")
    return safe, _pickle_only_copy(safe, root / "pickled")


def test_pickled_clip_weights_are_refused_unless_allowed(
    clip_dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    import torch
    from PIL import Image

    from region_rerank import ClipScorer

    safe, pickled = clip_dirs
    assert not list(pickled.rglob("*.safetensors")) and (pickled / "pytorch_model.bin").is_file()
    with pytest.raises(UnsafeWeightsError, match="allow_pickle=True"):
        _ = ClipScorer(str(pickled), model_options=ModelOptions(device="cpu")).model
    with caplog.at_level(logging.WARNING):
        opted_in = ClipScorer(
            str(pickled), model_options=ModelOptions(device="cpu", allow_pickle=True)
        )
        img = [Image.new("RGB", (40, 30), "red")]
        got = opted_in.embed_images(img)
    assert "allow_pickle=True" in caplog.text
    expected = ClipScorer(str(safe), model_options=ModelOptions(device="cpu")).embed_images(img)
    assert torch.allclose(got, expected, atol=1e-5)  # the same weights, from the pickle


def test_pickled_sentence_transformers_weights_are_refused_unless_allowed(
    tmp_path: Path,
) -> None:
    from region_rerank import SentenceTransformerScorer
    from tests.tiny.clip_models import build_tiny_st_text

    pickled = _pickle_only_copy(build_tiny_st_text(tmp_path / "st"), tmp_path / "pickled")
    with pytest.raises(UnsafeWeightsError, match="no safetensors weights"):
        _ = SentenceTransformerScorer(str(pickled), model_options=ModelOptions(device="cpu")).model
    scorer = SentenceTransformerScorer(
        str(pickled), model_options=ModelOptions(device="cpu", allow_pickle=True)
    )
    assert tuple(scorer.embed_texts(["a red bridge"]).shape) == (1, 32)


def test_the_shared_loader_refuses_pickles_for_every_auto_class(
    clip_dirs: tuple[Path, Path],
) -> None:
    """Croppers (grounding, VLM) load through the same wrapper."""
    import torch
    from transformers import AutoModel

    from region_rerank.device import from_pretrained

    _, pickled = clip_dirs
    with pytest.raises(UnsafeWeightsError):
        from_pretrained(AutoModel, str(pickled), dtype=torch.float32)
    with pytest.raises(UnsafeWeightsError):  # an explicit use_safetensors=False is not a way out
        from_pretrained(AutoModel, str(pickled), dtype=torch.float32, use_safetensors=False)
    model = from_pretrained(AutoModel, str(pickled), dtype=torch.float32, allow_pickle=True)
    assert model.config.model_type == "clip"


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_no_network_and_eval_writes_only_under_out(
    clip_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """A fresh interpreter, hub *not* forced offline, HOME and the working directory inside
    ``tmp_path``, every socket connection and DNS lookup recorded (and refused): importing,
    loading a local model folder, re-ranking and running ``region-rerank eval`` make no
    network attempt, and every file created or changed under ``tmp_path`` is inside the
    ``--out`` folder, except matplotlib's font cache (in ``MPLCONFIGDIR``, written once per
    machine by matplotlib itself; documented in the README)."""
    from tests.test_eval_pools import make_world

    safe, _ = clip_dirs
    data = make_world(tmp_path / "data")
    home, cwd, mpl = tmp_path / "home", tmp_path / "cwd", tmp_path / "mplconfig"
    for folder in (home, cwd, mpl):
        folder.mkdir()
    out = tmp_path / "eval_out"
    script = textwrap.dedent(
        f"""
        import socket
        attempts = []
        def refuse(kind):
            def f(*args, **kwargs):
                attempts.append((kind, repr(args)[:80]))
                raise OSError("network disabled by the test")
            return f
        socket.socket.connect = refuse("connect")
        socket.socket.connect_ex = refuse("connect_ex")
        socket.getaddrinfo = refuse("getaddrinfo")
        socket.create_connection = refuse("create_connection")

        from PIL import Image
        from region_rerank import Candidate, ClipScorer, CroppedReranker, ModelOptions, Query
        from region_rerank.cli import main
        scorer = ClipScorer({str(safe)!r}, model_options=ModelOptions(device="cpu"))
        rr = CroppedReranker(cropper="full", scorer=scorer)
        res = rr.rerank(Query(Image.new("RGB", (64, 48), "red"), "what?"),
                        [Candidate("a", "red"), Candidate("b", "blue")])
        assert not res.fallback, res.error
        assert main(["eval", "--data", {str(data)!r}, "--scorer", "fake", "--cropper",
                     "oracle", "--out", {str(out)!r}, "--examples", "2"]) == 0
        print("ATTEMPTS", attempts)
        """
    )
    before = _tree(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=_env(HOME=str(home), MPLCONFIGDIR=str(mpl), MPLBACKEND="Agg"),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ATTEMPTS []" in proc.stdout, proc.stdout
    after = _tree(tmp_path)
    changed = {p for p in after if before.get(p) != after[p]}
    outside = sorted(p for p in changed if not p.startswith(("eval_out/", "mplconfig/")))
    assert outside == [], outside
    assert (out / "metrics.json").is_file() and (out / "examples.png").is_file()


@pytest.mark.slow
def test_training_writes_only_under_its_output_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``region-rerank train proposal --out OUT`` (world inside OUT, default weights path)
    writes nothing anywhere else (the working directory included). The tiny world is
    generated first, inside that folder, so that only training's own writes are checked."""
    from region_rerank.cli import main
    from region_rerank.demo.world import make_world

    out = tmp_path / "train_out"
    make_world(out / "world", seed=0, n_train=40, n_val=10, n_test=10)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = _tree(tmp_path)
    argv = ["train", "proposal", "--world", str(out / "world"), "--out", str(out)]
    argv += ["--epochs", "1", "--max-seconds", "3"]  # default weights path: under --out
    assert main(argv) == 0
    after = _tree(tmp_path)
    changed = sorted(p for p in after if before.get(p) != after[p])
    assert changed and all(p.startswith("train_out/") for p in changed), changed
    assert (out / "proposal_policy.safetensors").is_file() and (out / "summary.json").is_file()


def test_pickled_vlm_weights_are_refused_unless_allowed(tmp_path: Path) -> None:
    from region_rerank.croppers.vlm import VLMCropper, VLMCropperConfig
    from tests.tiny.qwen import build_tiny_qwen

    pickled = _pickle_only_copy(build_tiny_qwen("qwen2_vl", tmp_path / "safe"), tmp_path / "pkl")
    assert not list(pickled.rglob("*.safetensors"))
    with pytest.raises(UnsafeWeightsError):
        VLMCropper(str(pickled), config=VLMCropperConfig(max_new_tokens=4))
    allowed = ModelOptions(allow_pickle=True)
    cropper = VLMCropper(
        str(pickled), model_options=allowed, config=VLMCropperConfig(max_new_tokens=4)
    )
    assert cropper.model_type == "qwen2_vl"

"""Training the light policy on your own data: ``train proposal --data DIR --scorer SPEC``
and ``ProposalPolicyCropper.from_pretrained``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from region_rerank import ConfigError, ModelLoadError, ProposalPolicyCropper, Query
from region_rerank.cli import main
from region_rerank.demo.world import make_world
from region_rerank.eval.runner import load_eval_data
from region_rerank.testing import FakeScorer
from region_rerank.train.proposal_run import training_splits

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset in the generic layout with a train split only (no boxes are used)."""
    root = tmp_path_factory.mktemp("own") / "data"
    make_world(root, seed=5, n_train=40, n_val=0, n_test=0, n_entities=40, kb_images=1)
    return root


def test_without_a_val_split_a_hashed_share_of_train_validates(data: Path) -> None:
    train, val = training_splits(data, "train", "val", val_fraction=0.25)
    everything = load_eval_data(data, "train")
    assert len(train) + len(val) == len(everything) and len(val) > 0 and len(train) > len(val)
    assert not {q.id for q in train.queries} & {q.id for q in val.queries}
    again = training_splits(data, "train", "val", val_fraction=0.25)[1]
    assert [q.id for q in again.queries] == [q.id for q in val.queries]  # by id, stable
    with pytest.raises(ConfigError, match="val_fraction"):
        training_splits(data, val_fraction=1.0)
    with pytest.raises(ConfigError, match="leave"):
        training_splits(data, val_fraction=1e-9)


def test_train_proposal_on_a_dataset_folder_then_from_pretrained(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "policy"
    args = ["train", "proposal", "--data", str(data), "--out", str(out), "--scorer", "fake"]
    extra = ["--epochs", "2", "--val-fraction", "0.25", "--full-first-reward", "2.5"]
    assert main([*args, *extra]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["reward"]["full_first"] == 2.5
    assert summary["scorer"] == "fake" and summary["data"] == str(data)
    assert summary["world"]["seed"] == 5  # the folder's manifest, when it has one
    assert summary["train_queries"] > summary["val_queries"] > 0
    cropper = ProposalPolicyCropper.from_pretrained(out)  # builds the recorded scorer
    assert isinstance(cropper.scorer, FakeScorer)
    assert cropper.arch.dim == FakeScorer().embed_texts(["a"]).shape[1]
    query = load_eval_data(data, "train").queries[0]
    decision = cropper.decide(Query(query.image, query.question, id=query.id))
    assert decision.image_size is not None and decision.source == "proposal"
    same = ProposalPolicyCropper.from_pretrained(out / "proposal_policy.safetensors")
    assert same.arch == cropper.arch


def test_world_options_do_not_apply_to_data(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "proposal", "--data", str(data), "--out", str(tmp_path), "--scorer", "fake"]
    assert main([*args, "--phrasing", "train"]) == 2
    assert "do not apply to --data" in capsys.readouterr().err
    assert not (tmp_path / "summary.json").exists()


def test_from_pretrained_errors_are_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelLoadError, match=r"holds no proposal_policy\.safetensors"):
        ProposalPolicyCropper.from_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="neither a file"):
        ProposalPolicyCropper.from_pretrained(tmp_path / "missing" / "policy.safetensors")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="hub repository 'someone/no-such-policy'"):
        ProposalPolicyCropper.from_pretrained("someone/no-such-policy")


def test_cached_training_sets_are_reused_only_for_the_same_source(
    data: Path, tmp_path: Path
) -> None:
    import torch

    from region_rerank.train.policy_set import cached_training_set, load_training_set

    out = tmp_path / "policy"
    common = ["--out", str(out), "--scorer", "fake", "--epochs", "1", "--val-fraction", "0.25"]
    assert main(["train", "proposal", "--data", str(data), *common]) == 0
    cache = out / "train_set.pt"
    arch = load_training_set(cache).arch
    source = torch.load(cache, weights_only=True)["source"]
    assert source["data"] == str(data.resolve()) and source["features"] >= 2
    mine = {k: v for k, v in source.items() if k != "features"}
    assert cached_training_set(cache, arch, mine) is not None
    assert cached_training_set(cache, arch, {**mine, "queries": "another world"}) is None
    other = tmp_path / "other"  # same query ids, other scenes
    make_world(other, seed=6, n_train=40, n_val=0, n_test=0, n_entities=40, kb_images=1)
    assert main(["train", "proposal", "--data", str(other), *common]) == 0
    rebuilt = torch.load(cache, weights_only=True)["source"]
    assert rebuilt["data"] == str(other.resolve()) and rebuilt["queries"] != source["queries"]

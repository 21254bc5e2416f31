"""ModelOptions: the one loading-options object of every model-backed component."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import torch

from region_rerank import (
    ConfigError,
    CroppedReranker,
    ModelOptions,
    SentenceTransformerScorer,
    build_cropper,
    build_scorer,
)
from region_rerank.model_options import add_model_option_args, model_options_from_args
from tests.tiny.clip_models import build_tiny_clip, build_tiny_st_clip


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dtype": "float64"}, "dtype"),
        ({"dtype": 3}, "dtype"),
        ({"device": ""}, "device"),
        ({"device": 0.5}, "device"),
        ({"allow_pickle": "yes"}, "allow_pickle"),
        ({"trust_remote_code": 1}, "trust_remote_code"),
    ],
)
def test_bad_values_are_config_errors_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        ModelOptions(**kwargs)


def test_torch_objects_and_names_are_accepted() -> None:
    opts = ModelOptions(device=torch.device("cpu"), dtype=torch.bfloat16)
    assert opts.explicit_device and opts.explicit_dtype
    assert not ModelOptions().explicit_device and not ModelOptions().explicit_dtype


@pytest.mark.parametrize("bad", [{"device": "cpu"}, "cpu"])
def test_builders_refuse_anything_but_model_options(bad: Any) -> None:
    with pytest.raises(ConfigError, match="model_options must be a ModelOptions"):
        build_scorer("fake", model_options=bad)
    with pytest.raises(ConfigError, match="model_options must be a ModelOptions"):
        build_cropper("full", model_options=bad)
    with pytest.raises(ConfigError, match="model_options must be a ModelOptions"):
        CroppedReranker("full", "fake", model_options=bad)


def test_the_reranker_passes_its_options_to_the_components_it_builds() -> None:
    opts = ModelOptions(device="cpu", dtype="float32")
    reranker = CroppedReranker("proposal", "demo", model_options=opts)
    assert reranker.scorer.model_options == opts
    assert reranker.cropper.scorer is reranker.scorer


def test_cli_arguments_map_onto_model_options() -> None:
    parser = argparse.ArgumentParser()
    add_model_option_args(parser, device="cpu")
    assert model_options_from_args(parser.parse_args([])) == ModelOptions(device="cpu")
    got = model_options_from_args(parser.parse_args(["--dtype", "bfloat16"]))
    assert got == ModelOptions(device="cpu", dtype="bfloat16")
    with pytest.raises(SystemExit):
        parser.parse_args(["--dtype", "float64"])


def test_sentence_transformers_dtype_applies_to_loaded_and_injected_models(
    tmp_path: Path,
) -> None:
    folder = build_tiny_st_clip(tmp_path / "st", build_tiny_clip(tmp_path / "clip"))
    half = ModelOptions(device="cpu", dtype="bfloat16")
    loaded = SentenceTransformerScorer(str(folder), model_options=half)
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    reference = SentenceTransformerScorer(str(folder), model_options=ModelOptions(device="cpu"))
    assert next(reference.model.parameters()).dtype == torch.float32
    injected = SentenceTransformerScorer(str(folder), model_obj=reference.model, model_options=half)
    assert next(injected.model.parameters()).dtype == torch.bfloat16
    assert injected.embed_texts(["a red bridge"]).dtype == torch.float32


def test_the_demo_scorer_refuses_a_dtype_other_than_float32() -> None:
    from region_rerank import DemoScorer

    with pytest.raises(ConfigError, match="DemoScorer runs in float32"):
        DemoScorer(model_options=ModelOptions(device="cpu", dtype="float16"))
    kept = DemoScorer(model_options=ModelOptions(device="cpu", dtype="float32"))
    assert kept.embed_texts(["a red bridge"]).dtype == torch.float32

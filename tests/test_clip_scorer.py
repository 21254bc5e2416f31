"""ClipScorer on tiny random CLIP / SigLIP / SigLIP2 checkpoints loaded from disk."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from region_rerank.errors import CandidateError, ConfigError, ScorerError
from region_rerank.images import crop_pil, crop_resize, pil_to_tensor
from region_rerank.model_options import ModelOptions
from region_rerank.scorers.base import (
    CandidateEmbeddingConfig,
    TensorImageScorer,
    l2_normalize,
)
from region_rerank.scorers.clip import ClipScorer
from region_rerank.types import Box, Candidate
from tests.tiny.clip_models import (
    IMAGE_SIZE,
    TEXT_POSITIONS,
    build_tiny_clip,
    build_tiny_siglip,
    build_tiny_siglip2,
    has_siglip2,
    smooth_image,
)

KINDS = ["clip", "siglip", *(["siglip2"] if has_siglip2() else [])]
BUILDERS = {"clip": build_tiny_clip, "siglip": build_tiny_siglip, "siglip2": build_tiny_siglip2}


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tiny dual encoder, built once per session and saved to its own folder."""
    root = tmp_path_factory.mktemp("tiny_dual_encoders")
    return {kind: BUILDERS[kind](root / kind) for kind in KINDS}


@pytest.fixture(scope="module")
def scorers(tiny_folders: dict[str, Path]) -> dict[str, ClipScorer]:
    """One scorer per kind, loaded through the public constructor like a hub id."""
    return {
        kind: ClipScorer(str(folder), model_options=ModelOptions(device="cpu"))
        for kind, folder in tiny_folders.items()
    }


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _images(n: int, seed: int = 0) -> list[Any]:
    sizes = [(96, 72), (64, 64), (50, 120), (130, 90)]
    return [smooth_image(*sizes[i % len(sizes)], seed=seed + i) for i in range(n)]


TEXTS = ["a red car", "a small dog on grass", "the eiffel tower at night", "x"]


def _cos(a: Any, b: Any) -> Any:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


# ---------------------------------------------------------------- loading and errors


def test_protocols_and_name(scorers: dict[str, ClipScorer], tiny_folders: dict[str, Path]) -> None:
    scorer = scorers["clip"]
    assert isinstance(scorer, TensorImageScorer)
    assert scorer.name == f"clip:{tiny_folders['clip']}"
    assert scorer.device == torch.device("cpu")


def test_bad_folder_fails_on_first_use_with_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    scorer = ClipScorer(
        str(missing), model_options=ModelOptions(device="cpu")
    )  # lazy: nothing loaded yet
    with pytest.raises(ConfigError, match="cannot load model") as info:
        scorer.embed_texts(["hello"])
    assert str(missing) in str(info.value)


def test_not_a_dual_encoder_is_a_config_error(tmp_path: Path) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = tmp_path / "text-only"
    cfg = CLIPTextConfig(
        vocab_size=100,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=8,
    )
    CLIPTextModel(cfg).save_pretrained(folder)
    with pytest.raises(ConfigError, match="no get_image_features") as info:
        ClipScorer(str(folder), model_options=ModelOptions(device="cpu")).embed_images(_images(1))
    assert str(folder) in str(info.value) and "CLIPTextModel" in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"model_options": ModelOptions},
        {"model_options": {"dtype": "float16"}},
        {"max_text_tokens": 0},
    ],
)
def test_invalid_settings_are_rejected_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ClipScorer("whatever", **kwargs)


def test_trust_remote_code_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="region_rerank.scorers.clip"):
        ClipScorer("some/model", model_options=ModelOptions(trust_remote_code=True))
    assert any("trust_remote_code=True" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="region_rerank.scorers.clip"):
        ClipScorer("some/model")
    assert not caplog.records


def test_injected_model_and_processor_match_folder_loading(
    tiny_folders: dict[str, Path], scorers: dict[str, ClipScorer]
) -> None:
    from transformers import AutoModel, AutoProcessor

    folder = tiny_folders["clip"]
    injected = ClipScorer(
        "my-clip",
        model_obj=AutoModel.from_pretrained(folder),
        processor=AutoProcessor.from_pretrained(folder),
    )
    imgs = _images(2)
    assert torch.allclose(injected.embed_images(imgs), scorers["clip"].embed_images(imgs))
    assert torch.allclose(injected.embed_texts(TEXTS), scorers["clip"].embed_texts(TEXTS))


# ---------------------------------------------------------------- embeddings


def test_shapes_dtype_normalisation(scorers: dict[str, ClipScorer], kind: str) -> None:
    scorer = scorers[kind]
    img = scorer.embed_images(_images(3))
    txt = scorer.embed_texts(TEXTS)
    for emb, n in ((img, 3), (txt, len(TEXTS))):
        assert emb.shape == (n, 32)
        assert emb.dtype == torch.float32
        assert emb.device == scorer.device
        assert torch.allclose(emb.norm(dim=-1), torch.ones(n), atol=1e-5)
        assert not emb.is_inference()  # callers may modify the result in place
    assert scorer.embed_images([]).shape == (0, 32)
    assert scorer.embed_texts([]).shape == (0, 32)


def test_deterministic_and_input_sensitive(scorers: dict[str, ClipScorer], kind: str) -> None:
    scorer = scorers[kind]
    imgs = _images(2)
    a, b = scorer.embed_images(imgs), scorer.embed_images(imgs)
    assert torch.equal(a, b)
    assert torch.equal(scorer.embed_texts(TEXTS), scorer.embed_texts(TEXTS))
    assert _cos(a[0], a[1]) < 0.9999  # different images, different embeddings


def test_batch_size_does_not_change_embeddings(
    tiny_folders: dict[str, Path], scorers: dict[str, ClipScorer], kind: str
) -> None:
    one = ClipScorer(
        str(tiny_folders[kind]), batch_size=1, model_options=ModelOptions(device="cpu")
    )
    imgs = _images(5)
    assert torch.allclose(one.embed_images(imgs), scorers[kind].embed_images(imgs), atol=1e-5)
    assert torch.allclose(one.embed_texts(TEXTS), scorers[kind].embed_texts(TEXTS), atol=1e-5)


def test_image_embeddings_equal_the_models_own_projection(
    scorers: dict[str, ClipScorer], kind: str
) -> None:
    scorer = scorers[kind]
    imgs = _images(2)
    inputs = scorer.processor.image_processor(images=imgs, return_tensors="pt")
    with torch.no_grad():
        out = scorer.model.get_image_features(**inputs)
    ref = l2_normalize(getattr(out, "pooler_output", out))
    assert torch.allclose(scorer.embed_images(imgs), ref, atol=1e-5)


def test_text_padding_and_truncation_follow_the_model(
    scorers: dict[str, ClipScorer], kind: str
) -> None:
    scorer = scorers[kind]
    padding = True if kind == "clip" else "max_length"  # SigLIP is trained on padded text
    enc = scorer.processor.tokenizer(
        TEXTS, padding=padding, truncation=True, max_length=TEXT_POSITIONS, return_tensors="pt"
    )
    enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        out = scorer.model.get_text_features(**enc)
    ref = l2_normalize(getattr(out, "pooler_output", out))
    assert torch.allclose(scorer.embed_texts(TEXTS), ref, atol=1e-5)
    # Texts longer than the position table are truncated, not an error: two long texts that
    # only differ after the cut embed identically.
    long_a = "abcdefghijklmnopqrstuvwxyz" * 4 + " ending one"
    long_b = "abcdefghijklmnopqrstuvwxyz" * 4 + " something else"
    emb = scorer.embed_texts([long_a, long_b])
    assert torch.allclose(emb[0], emb[1], atol=1e-6)


def test_bfloat16_model_still_returns_float32(tiny_folders: dict[str, Path]) -> None:
    low = ClipScorer(
        str(tiny_folders["clip"]), model_options=ModelOptions(device="cpu", dtype="bfloat16")
    )
    full = ClipScorer(
        str(tiny_folders["clip"]), model_options=ModelOptions(device="cpu", dtype="float32")
    )
    imgs = _images(2)
    emb = low.embed_images(imgs)
    assert emb.dtype == torch.float32
    assert next(low.model.parameters()).dtype == torch.bfloat16
    assert (_cos(emb, full.embed_images(imgs)) > 0.98).all()


# ---------------------------------------------------------------- tensor path


def test_image_spec_is_read_from_the_processor(scorers: dict[str, ClipScorer], kind: str) -> None:
    spec = scorers[kind].image_spec
    assert spec.size == (IMAGE_SIZE, IMAGE_SIZE)
    if kind == "clip":
        assert spec.center_crop is True
        assert spec.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
        assert spec.interpolation == "bicubic"
    else:
        assert spec.center_crop is False
        assert spec.mean == pytest.approx((0.5, 0.5, 0.5))
        assert spec.std == pytest.approx((0.5, 0.5, 0.5))
        assert spec.interpolation == ("bicubic" if kind == "siglip" else "bilinear")


CROPS = {
    # (image size, box); SigLIP2 keeps the aspect ratio, so its crops are square.
    "clip": [((120, 90), None), ((120, 90), Box(10, 5, 100, 60)), ((90, 140), Box(0, 20, 70, 130))],
    "siglip": [
        ((120, 90), None),
        ((120, 90), Box(10, 5, 100, 60)),
        ((90, 140), Box(5, 20, 85, 90)),
    ],
    "siglip2": [
        ((100, 100), None),
        ((120, 90), Box(20, 10, 80, 70)),
        ((90, 140), Box(5, 20, 85, 100)),
    ],
}


def test_tensor_path_matches_the_processor_path(scorers: dict[str, ClipScorer], kind: str) -> None:
    """crop_resize(image_spec) + embed_pixel_values == processor(PIL crop) + embed_images."""
    scorer = scorers[kind]
    spec = scorer.image_spec
    for i, (size, box) in enumerate(CROPS[kind]):
        image = smooth_image(*size, seed=10 + i)
        reference = scorer.embed_images([crop_pil(image, box)])
        pixels = crop_resize(
            pil_to_tensor(image, scorer.device),
            [box],
            spec.size,
            center_crop=spec.center_crop,
            mean=spec.mean,
            std=spec.std,
            interpolation=spec.interpolation,
        )
        fast = scorer.embed_pixel_values(pixels)
        assert fast.shape == reference.shape and fast.dtype == torch.float32
        right = _cos(fast, reference).item()
        assert right > 0.999, (kind, size, box, right)
        if kind != "siglip2" and box is not None:
            # The geometry matters: emulating the other processor family is measurably worse.
            wrong_pixels = crop_resize(
                pil_to_tensor(image),
                [box],
                spec.size,
                center_crop=not spec.center_crop,
                mean=spec.mean,
                std=spec.std,
                interpolation=spec.interpolation,
            )
            assert _cos(scorer.embed_pixel_values(wrong_pixels), reference).item() < right


def test_tensor_path_batches_many_boxes(scorers: dict[str, ClipScorer]) -> None:
    scorer = scorers["clip"]
    spec = scorer.image_spec
    image = smooth_image(120, 90, seed=3)
    boxes: list[Box | None] = [None, Box(0, 0, 60, 60), Box(50, 20, 119, 89)]
    pixels = crop_resize(
        pil_to_tensor(image), boxes, spec.size, center_crop=True, mean=spec.mean, std=spec.std
    )
    batched = scorer.embed_pixel_values(pixels)
    singles = torch.cat([scorer.embed_pixel_values(pixels[i : i + 1]) for i in range(3)])
    assert batched.shape == (3, 32)
    assert torch.allclose(batched, singles, atol=1e-5)


def test_wrong_pixel_geometry_is_a_scorer_error(scorers: dict[str, ClipScorer]) -> None:
    scorer = scorers["clip"]
    with pytest.raises(ScorerError, match="expects"):
        scorer.embed_pixel_values(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ScorerError, match="N x 3 x H x W"):
        scorer.embed_pixel_values(torch.zeros(3, IMAGE_SIZE, IMAGE_SIZE))


# ---------------------------------------------------------------- candidates and scores


def test_candidate_embeddings_combine_images_and_text(scorers: dict[str, ClipScorer]) -> None:
    scorer = scorers["clip"]
    imgs = _images(3, seed=20)
    text = "a bridge over a river"
    cands = [
        Candidate("text", text=text),
        Candidate("image", images=imgs[0]),
        Candidate("many", images=imgs),
        Candidate("both", text=text, images=[imgs[0]]),
    ]
    emb = scorer.embed_candidates(cands)
    t = scorer.embed_texts([text])[0]
    i = scorer.embed_images(imgs)
    assert emb.shape == (4, 32)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert torch.allclose(emb[0], t, atol=1e-5)
    assert torch.allclose(emb[1], i[0], atol=1e-5)
    assert torch.allclose(emb[2], l2_normalize(i.mean(0, keepdim=True))[0], atol=1e-5)
    assert torch.allclose(emb[3], l2_normalize((i[0] + t)[None])[0], atol=1e-5)


def test_candidate_weights_and_text_cut(scorers: dict[str, ClipScorer], tiny_folders: Any) -> None:
    folder = str(tiny_folders["clip"])
    img = _images(1, seed=30)[0]
    text = "a lighthouse on a cliff " * 40
    cand = [Candidate("c", text=text, images=[img])]
    base = scorers["clip"]
    t = base.embed_texts([text[:500]])[0]
    i = base.embed_images([img])[0]

    def embed(**cfg: Any) -> Any:
        cc = CandidateEmbeddingConfig(**cfg)
        return ClipScorer(
            folder, candidate_config=cc, model_options=ModelOptions(device="cpu")
        ).embed_candidates(cand)[0]

    text_only = embed(image_weight=0.0)
    assert torch.allclose(text_only, t, atol=1e-5)
    assert torch.allclose(embed(text_weight=0.0), i, atol=1e-5)
    heavy_text = embed(text_weight=3.0)
    assert torch.allclose(heavy_text, l2_normalize((i + 3.0 * t)[None])[0], atol=1e-5)
    assert _cos(heavy_text, t) > _cos(embed(), t)
    cut = embed(max_text_chars=10, image_weight=0.0)
    assert torch.allclose(cut, base.embed_texts([text[:10]])[0], atol=1e-5)
    with pytest.raises(CandidateError, match="no text or image"):
        ClipScorer(
            folder, candidate_config=CandidateEmbeddingConfig(image_weight=0.0)
        ).embed_candidates([Candidate("img-only", images=[img])])


def test_scores_are_precise_cosines(scorers: dict[str, ClipScorer]) -> None:
    scorer = scorers["clip"]
    q = scorer.embed_images(_images(2, seed=40))
    c = scorer.embed_candidates(
        [Candidate("a", text="a red car"), Candidate("b", images=_images(1, seed=41))]
    )
    scores = scorer.score(q, c)
    assert scores.shape == (2, 2)
    expected = torch.nn.functional.cosine_similarity(
        q.double()[:, None, :], c.double()[None, :, :], dim=-1
    )
    assert torch.allclose(scores.double(), expected, atol=1e-6)
    assert torch.allclose(scorer.score(q, q).diagonal(), torch.ones(2), atol=1e-6)

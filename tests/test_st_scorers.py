"""SentenceTransformerScorer and CrossEncoderScorer on tiny random sentence-transformers models
(a CLIP bi-encoder, a text-only bi-encoder and a Qwen2-VL generative cross-encoder)."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("sentence_transformers", reason="needs the sbert extra (sentence-transformers)")

from region_rerank.errors import CandidateError, ConfigError, ScorerError
from region_rerank.model_options import ModelOptions
from region_rerank.scorers.base import PairScorer, Scorer, l2_normalize
from region_rerank.scorers.clip import ClipScorer
from region_rerank.scorers.cross_encoder import CrossEncoderScorer
from region_rerank.scorers.sentence_transformers import (
    SentenceTransformerScorer,
    progress_enabled,
)
from region_rerank.types import Candidate, Query
from tests.tiny.clip_models import (
    build_tiny_clip,
    build_tiny_st_clip,
    build_tiny_st_clip_legacy,
    build_tiny_st_text,
    build_tiny_vl_cross_encoder,
    smooth_image,
)


@pytest.fixture(scope="session")
def st_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny sentence-transformers models, built once per session."""
    root = tmp_path_factory.mktemp("tiny_st")
    clip = build_tiny_clip(root / "clip")
    return {
        "clip": clip,
        "st_clip": build_tiny_st_clip(root / "st_clip", clip),
        "st_clip_legacy": build_tiny_st_clip_legacy(root / "st_clip_legacy", clip),
        "st_text": build_tiny_st_text(root / "st_text"),
        "cross": build_tiny_vl_cross_encoder(root / "cross"),
    }


@pytest.fixture(scope="module")
def st_clip(st_folders: dict[str, Path]) -> SentenceTransformerScorer:
    return SentenceTransformerScorer(
        str(st_folders["st_clip"]), model_options=ModelOptions(device="cpu")
    )


@pytest.fixture(scope="module")
def st_text(st_folders: dict[str, Path]) -> SentenceTransformerScorer:
    return SentenceTransformerScorer(
        str(st_folders["st_text"]), model_options=ModelOptions(device="cpu")
    )


@pytest.fixture(scope="module")
def cross(st_folders: dict[str, Path]) -> CrossEncoderScorer:
    return CrossEncoderScorer(str(st_folders["cross"]), model_options=ModelOptions(device="cpu"))


def _images(n: int, seed: int = 0) -> list[Any]:
    sizes = [(96, 72), (64, 64), (50, 120), (130, 90)]
    return [smooth_image(*sizes[i % len(sizes)], seed=seed + i) for i in range(n)]


TEXTS = ["a red car", "a small dog on grass", "the eiffel tower at night", "x"]


# ---------------------------------------------------------------- SentenceTransformerScorer


def test_st_clip_embeddings(st_clip: SentenceTransformerScorer) -> None:
    assert isinstance(st_clip, Scorer)
    assert st_clip.supports_images
    assert st_clip.device == torch.device("cpu")
    img = st_clip.embed_images(_images(3))
    txt = st_clip.embed_texts(TEXTS)
    for emb, n in ((img, 3), (txt, len(TEXTS))):
        assert emb.shape == (n, 32) and emb.dtype == torch.float32
        assert torch.allclose(emb.norm(dim=-1), torch.ones(n), atol=1e-5)
        assert not emb.is_inference()
    assert torch.equal(img, st_clip.embed_images(_images(3)))
    assert st_clip.embed_images([]).shape == (0, 32)


def test_st_clip_agrees_with_clip_scorer_on_the_same_weights(
    st_clip: SentenceTransformerScorer, st_folders: dict[str, Path]
) -> None:
    clip = ClipScorer(str(st_folders["clip"]), model_options=ModelOptions(device="cpu"))
    imgs = _images(3, seed=5)
    assert torch.allclose(st_clip.embed_images(imgs), clip.embed_images(imgs), atol=1e-5)
    assert torch.allclose(st_clip.embed_texts(TEXTS), clip.embed_texts(TEXTS), atol=1e-5)


def test_legacy_clip_layout_loads_like_the_hub_model(
    st_clip: SentenceTransformerScorer, st_folders: dict[str, Path]
) -> None:
    legacy = SentenceTransformerScorer(
        str(st_folders["st_clip_legacy"]), model_options=ModelOptions(device="cpu")
    )
    assert legacy.supports_images
    imgs = _images(2, seed=7)
    assert torch.allclose(legacy.embed_images(imgs), st_clip.embed_images(imgs), atol=1e-5)
    assert torch.allclose(legacy.embed_texts(TEXTS), st_clip.embed_texts(TEXTS), atol=1e-5)


def test_st_batch_size_does_not_change_embeddings(
    st_clip: SentenceTransformerScorer, st_folders: dict[str, Path]
) -> None:
    one = SentenceTransformerScorer(
        str(st_folders["st_clip"]), batch_size=1, model_options=ModelOptions(device="cpu")
    )
    imgs = _images(4)
    assert torch.allclose(one.embed_images(imgs), st_clip.embed_images(imgs), atol=1e-5)
    assert torch.allclose(one.embed_texts(TEXTS), st_clip.embed_texts(TEXTS), atol=1e-5)


def test_st_candidates(st_clip: SentenceTransformerScorer) -> None:
    imgs = _images(2, seed=9)
    text = "a castle on a hill"
    emb = st_clip.embed_candidates(
        [
            Candidate("t", text=text),
            Candidate("i", images=imgs[0]),
            Candidate("ii", images=imgs),
            Candidate("ti", text=text, images=imgs[:1]),
        ]
    )
    t = st_clip.embed_texts([text])[0]
    i = st_clip.embed_images(imgs)
    assert torch.allclose(emb[0], t, atol=1e-5)
    assert torch.allclose(emb[1], i[0], atol=1e-5)
    assert torch.allclose(emb[2], l2_normalize(i.mean(0, keepdim=True))[0], atol=1e-5)
    assert torch.allclose(emb[3], l2_normalize((i[0] + t)[None])[0], atol=1e-5)
    scores = st_clip.score(i, emb)
    assert scores.shape == (2, 4)
    assert scores[0, 1].item() == pytest.approx(1.0, abs=1e-5)


def test_text_only_model_embeds_candidates_by_text(st_text: SentenceTransformerScorer) -> None:
    assert not st_text.supports_images
    txt = st_text.embed_texts(TEXTS)
    assert txt.shape == (len(TEXTS), 32)
    assert torch.allclose(txt.norm(dim=-1), torch.ones(len(TEXTS)), atol=1e-5)
    img = _images(1)[0]
    emb = st_text.embed_candidates(
        [Candidate("a", text="a red car", images=[img]), Candidate("b", text="a dog")]
    )
    assert torch.allclose(emb, st_text.embed_texts(["a red car", "a dog"]), atol=1e-5)
    with pytest.raises(ScorerError, match="text-only"):
        st_text.embed_images([img])
    with pytest.raises(CandidateError, match=r"'only-image'.*text-only"):
        st_text.embed_candidates([Candidate("only-image", images=[img])])


def test_st_bad_folder_is_a_config_error(tmp_path: Path) -> None:
    scorer = SentenceTransformerScorer(
        str(tmp_path / "missing"), model_options=ModelOptions(device="cpu")
    )
    with pytest.raises(ConfigError, match="cannot load model"):
        scorer.embed_texts(["x"])


def test_progress_bar_follows_the_log_level() -> None:
    log = logging.getLogger("region_rerank.test_progress")
    try:
        log.setLevel(logging.WARNING)
        assert not progress_enabled(log)
        log.setLevel(logging.INFO)
        assert progress_enabled(log)
        log.setLevel(logging.DEBUG)
        assert progress_enabled(log)
    finally:
        log.setLevel(logging.NOTSET)


# ---------------------------------------------------------------- CrossEncoderScorer


QUESTION = "what is the name of this building?"


def _candidates() -> list[Candidate]:
    imgs = _images(3, seed=50)
    return [
        Candidate("text", text="Notre-Dame de Paris, a medieval cathedral."),
        Candidate("image", images=[imgs[0]]),
        Candidate("both", text="The Golden Gate Bridge.", images=[imgs[1]]),
        Candidate("two-images", text="Mount Fuji.", images=imgs[1:]),
        Candidate("long", text="The Colosseum. " * 100),
    ]


def test_cross_encoder_scores_each_candidate_in_order(cross: CrossEncoderScorer) -> None:
    assert isinstance(cross, PairScorer)
    view = smooth_image(90, 70, seed=1)
    query = Query(image=view, question=QUESTION)
    cands = _candidates()
    scores = cross.score_pairs(query, view, cands)
    assert len(scores) == len(cands) and all(isinstance(s, float) for s in scores)
    assert all(0.0 < s < 1.0 for s in scores)  # sigmoid of a one-label model
    assert len(set(scores)) == len(scores)
    # In input order: reversing the candidates reverses the scores.
    reversed_scores = cross.score_pairs(query, view, cands[::-1])
    assert reversed_scores == pytest.approx(scores[::-1], abs=1e-5)
    # Each score is the score of that pair alone (batching does not leak between pairs).
    singles = [cross.score_pairs(query, view, [c])[0] for c in cands]
    assert singles == pytest.approx(scores, abs=1e-5)
    assert cross.score_pairs(query, view, []) == []


def test_cross_encoder_batch_size_is_invisible(
    cross: CrossEncoderScorer, st_folders: dict[str, Path]
) -> None:
    view = smooth_image(80, 80, seed=2)
    query = Query(image=view, question=QUESTION)
    one = CrossEncoderScorer(
        str(st_folders["cross"]), batch_size=1, model_options=ModelOptions(device="cpu")
    )
    assert one.score_pairs(query, view, _candidates()) == pytest.approx(
        cross.score_pairs(query, view, _candidates()), abs=1e-5
    )


def test_cross_encoder_query_view_and_question_matter(cross: CrossEncoderScorer) -> None:
    full = smooth_image(120, 90, seed=3)
    crop = full.crop((10, 10, 70, 70))
    query = Query(image=full, question=QUESTION)
    cands = _candidates()
    on_full = cross.score_pairs(query, full, cands)
    on_crop = cross.score_pairs(query, crop, cands)
    assert max(abs(a - b) for a, b in zip(on_full, on_crop)) > 1e-6
    other_question = cross.score_pairs(Query(image=full, question="who built it?"), full, cands)
    assert max(abs(a - b) for a, b in zip(on_full, other_question)) > 1e-6


def test_cross_encoder_inputs(cross: CrossEncoderScorer, st_folders: dict[str, Path]) -> None:
    view = smooth_image(64, 64, seed=4)
    query = Query(image=view, question=QUESTION)
    left = cross.query_input(query, view)
    assert left["text"] == QUESTION and left["image"].size == (64, 64)
    no_q = CrossEncoderScorer(str(st_folders["cross"]), include_question=False)
    assert no_q.query_input(query, view).size == (64, 64)  # the view alone
    cands = _candidates()
    assert cross.candidate_input(cands[0]) == cands[0].text
    assert set(cross.candidate_input(cands[1])) == {"image"}
    assert set(cross.candidate_input(cands[2])) == {"text", "image"}
    assert len(cross.candidate_input(cands[4])) == 500  # text cut at max_text_chars
    two = CrossEncoderScorer(
        str(st_folders["cross"]), max_candidate_images=2, model_options=ModelOptions(device="cpu")
    )
    assert len(two.candidate_input(cands[3])["image"]) == 2
    assert two.score_pairs(query, view, cands[3:4]) != pytest.approx(
        cross.score_pairs(query, view, cands[3:4]), abs=1e-7
    )
    with pytest.raises(CandidateError, match="'empty'"):
        cross.score_pairs(query, view, [Candidate("empty")])


def test_cross_encoder_raw_logits(cross: CrossEncoderScorer, st_folders: dict[str, Path]) -> None:
    raw = CrossEncoderScorer(
        str(st_folders["cross"]), apply_activation=False, model_options=ModelOptions(device="cpu")
    )
    view = smooth_image(70, 90, seed=6)
    query = Query(image=view, question=QUESTION)
    logits = torch.tensor(raw.score_pairs(query, view, _candidates()))
    probs = torch.tensor(cross.score_pairs(query, view, _candidates()))
    assert torch.allclose(torch.sigmoid(logits), probs, atol=1e-5)


def test_cross_encoder_rejects_text_only_and_missing_models(
    st_folders: dict[str, Path], tmp_path: Path
) -> None:
    view = smooth_image(32, 32)
    query = Query(image=view, question="q")
    text_only = CrossEncoderScorer(
        str(st_folders["st_text"].parent / "hf"), model_options=ModelOptions(device="cpu")
    )
    with pytest.raises(ConfigError, match="text-only"):
        text_only.score_pairs(query, view, [Candidate("a", text="a")])
    missing = CrossEncoderScorer(
        str(tmp_path / "missing"), model_options=ModelOptions(device="cpu")
    )
    with pytest.raises(ConfigError, match="cannot load model"):
        missing.score_pairs(query, view, [Candidate("a", text="a")])
    with pytest.raises(ConfigError):
        CrossEncoderScorer("x", batch_size=0)


# ---------------------------------------------------------------- shared loading


def test_injected_objects_without_the_needed_method_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"no encode\(\)"):
        SentenceTransformerScorer("mine", model_obj=object()).embed_texts(["x"])
    view = smooth_image(32, 32)
    with pytest.raises(ConfigError, match=r"no predict\(\)"):
        CrossEncoderScorer("mine", model_obj=object()).score_pairs(
            Query(image=view, question="q"), view, [Candidate("a", text="a")]
        )


def test_concurrent_first_use_loads_the_model_once(
    st_folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sentence_transformers

    loads: list[str] = []

    class CountingSentenceTransformer(sentence_transformers.SentenceTransformer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            loads.append(str(args[0]))
            time.sleep(0.05)  # widen the window in which a second thread could load again
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", CountingSentenceTransformer)
    scorer = SentenceTransformerScorer(
        str(st_folders["st_clip"]), model_options=ModelOptions(device="cpu")
    )
    with ThreadPoolExecutor(8) as ex:
        outs = list(ex.map(lambda t: scorer.embed_texts([t]), TEXTS * 2))
    assert loads == [str(st_folders["st_clip"])]
    reference = scorer.embed_texts(TEXTS * 2)
    assert torch.allclose(torch.cat(outs), reference, atol=1e-5)


def test_reranker_with_a_cross_encoder_keeps_unscorable_candidates_last(
    cross: CrossEncoderScorer,
) -> None:
    from region_rerank import CroppedReranker, RerankerConfig
    from region_rerank.testing import FakeCropper

    rr = CroppedReranker(
        FakeCropper((0.1, 0.1, 0.7, 0.8)), cross, config=RerankerConfig(on_error="raise")
    )
    view = smooth_image(90, 70, seed=1)
    cands = [*_candidates()[:3], Candidate("empty"), Candidate("pre", embedding=[1.0, 0.0])]
    res = rr.rerank(Query(image=view, question=QUESTION), cands)
    assert not res.fallback and len(res.ranking) == 5
    assert set(res.ids[3:]) == {"empty", "pre"}
    assert [s.score for s in res.ranking[3:]] == [float("-inf")] * 2
    crop = view.crop(res.decision.box.as_int_tuple())  # type: ignore[union-attr]
    direct = cross.score_pairs(Query(image=view, question=QUESTION), crop, _candidates()[:3])
    assert sorted(s.score for s in res.ranking[:3]) == pytest.approx(sorted(direct), abs=1e-5)

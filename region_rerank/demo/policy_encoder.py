"""The demo world's scorer-independent policy encoders (``dense:demo``,
``dense:demo:sentence``): the shipped image tower's convolutional trunk and projection,
frozen, and MiniLM word vectors or MiniLM sentence embeddings of the question."""

from __future__ import annotations

from typing import Any

from region_rerank.croppers.policy_encoder import (
    DenseRegionEncoder,
    SentenceEncoder,
    StaticWordEncoder,
)

__all__ = ["demo_dense_encoder"]


def demo_dense_encoder(
    device: Any = "cpu", *, words: bool = True, sentence: bool = False, input_size: int = 160
) -> DenseRegionEncoder:
    """The ``dense:demo`` encoder: the shipped demo tower (checksum-verified, recorded in the
    card) over the whole image at ``input_size`` pixels, and the demo MiniLM tower's word
    vectors (``words``: one per word for attention pooling, else their mean); with
    ``sentence`` (``dense:demo:sentence``, ``words`` ignored) the MiniLM embedding of the
    whole question instead."""
    from region_rerank.demo.text_tower import load_text_model
    from region_rerank.demo.tower import CHECKSUM_PATH, IMAGE_MEAN, IMAGE_STD, load_image_tower

    text = load_text_model("cpu")
    return DenseRegionEncoder(
        load_image_tower(),
        SentenceEncoder(text) if sentence else StaticWordEncoder(text),
        mean=IMAGE_MEAN,
        std=IMAGE_STD,
        input_size=input_size,
        tower_sha256=CHECKSUM_PATH.read_text().strip(),
        device=device,
        words=words and not sentence,
    )

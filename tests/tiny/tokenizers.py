"""Byte-level tokenizers built in memory (no hub): every text round-trips."""

from __future__ import annotations

from typing import Any

QWEN_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def byte_alphabet() -> list[str]:
    from tokenizers import pre_tokenizers

    return sorted(pre_tokenizers.ByteLevel.alphabet())


def build_qwen_tokenizer() -> Any:
    """A Qwen2Tokenizer over the 256 byte symbols plus Qwen's special tokens."""
    from transformers import Qwen2Tokenizer

    vocab = {s: i for i, s in enumerate(byte_alphabet())}
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL[1:]})
    tok.add_special_tokens({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
    return tok


def build_clip_tokenizer(model_max_length: int = 16) -> Any:
    """A CLIPTokenizer over byte symbols and their ``</w>`` forms (end token has the top id)."""
    from transformers import CLIPTokenizer

    syms = byte_alphabet()
    vocab: dict[str, int] = {}
    for s in syms:
        vocab[s] = len(vocab)
    for s in syms:
        vocab[s + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tok = CLIPTokenizer(
        vocab=vocab,
        merges=[],
        unk_token="<|endoftext|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=model_max_length,
    )
    return tok

"""Device and dtype resolution (``"auto"`` picks cuda, then mps, then cpu), and loading a
transformers model in a resolved dtype whatever the installed transformers version, from
safetensors only unless the caller opts in to pickled weights."""

from __future__ import annotations

import logging
from typing import Any

from region_rerank.errors import ConfigError, UnsafeWeightsError

__all__ = [
    "DTYPE_NAMES",
    "resolve_device",
    "resolve_dtype",
    "resolve_device_dtype",
    "from_pretrained",
    "dtype_keyword",
    "pickle_refused_message",
]

logger = logging.getLogger(__name__)

#: The dtype names every ``dtype=`` setting accepts (besides a ``torch.dtype``).
DTYPE_NAMES = ("auto", "float32", "float16", "bfloat16")


def resolve_device(device: Any = "auto") -> Any:
    """Return a ``torch.device``: ``"auto"`` -> cuda if available, else mps, else cpu."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device={device!r} is not a valid torch device: {exc}") from exc


def resolve_dtype(dtype: Any, device: Any) -> Any:
    """Return a ``torch.dtype``: ``"auto"`` -> float16 on cuda/mps, float32 on cpu."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.float16 if resolve_device(device).type in ("cuda", "mps") else torch.float32
    if dtype not in DTYPE_NAMES:
        raise ConfigError(f"dtype={dtype!r} is not allowed; choose one of {list(DTYPE_NAMES)}")
    return getattr(torch, dtype)


def resolve_device_dtype(device: Any, dtype: Any, *, prefer_bf16: bool = False) -> tuple[Any, Any]:
    """Resolve ``device`` then ``dtype`` for it.

    Args:
        device: As for :func:`resolve_device`.
        dtype: As for :func:`resolve_dtype`.
        prefer_bf16: With ``dtype="auto"`` on a CUDA device that supports bfloat16, pick
            bfloat16 instead of float16 (what the Qwen-VL policies are trained in).

    Returns:
        ``(torch.device, torch.dtype)``.
    """
    import torch

    dev = resolve_device(device)
    auto = dtype is None or (isinstance(dtype, str) and dtype == "auto")
    if prefer_bf16 and auto and dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return dev, torch.bfloat16
    return dev, resolve_dtype(dtype, dev)


def dtype_keyword() -> str:
    """The ``from_pretrained`` keyword for the weights' dtype: ``dtype`` (transformers
    >= 4.56) or ``torch_dtype`` (older releases, which ignore ``dtype`` and load float32)."""
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def from_pretrained(
    auto_class: Any, name: str, *, dtype: Any, allow_pickle: bool = False, **kwargs: Any
) -> Any:
    """``auto_class.from_pretrained(name, ...)`` loading the weights in ``dtype``.

    Only safetensors weights are loaded unless ``allow_pickle=True``: pickled weights
    (``pytorch_model.bin``, ``.pt``) can run code when unpickled. transformers 5 names the
    dtype argument ``dtype``; releases before 4.56 only know ``torch_dtype`` (and ignore
    ``dtype``, loading float32).

    Raises:
        UnsafeWeightsError: ``name`` has no safetensors weights and ``allow_pickle`` is False.
    """
    key = dtype_keyword()
    if allow_pickle:
        logger.warning(
            "loading %r with allow_pickle=True: pickled weights may execute code; only use "
            "it for models you trust",
            name,
        )
    else:
        kwargs["use_safetensors"] = True
    try:
        return auto_class.from_pretrained(name, **{key: dtype}, **kwargs)
    except OSError as exc:
        if allow_pickle or "safetensors" not in str(exc):
            raise
        raise UnsafeWeightsError(pickle_refused_message(name, exc)) from exc


def pickle_refused_message(name: str, exc: BaseException) -> str:
    """The message of :class:`UnsafeWeightsError` for model ``name``."""
    return (
        f"{name!r} has no safetensors weights ({exc}); pickled weights (.bin / .pt) are "
        "refused because loading them can execute code. Convert the model to safetensors, "
        "or pass allow_pickle=True if you trust its source"
    )

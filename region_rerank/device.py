"""Device and dtype resolution (``"auto"`` picks cuda, then mps, then cpu), and loading a
transformers model in a resolved dtype whatever the installed transformers version."""

from __future__ import annotations

from typing import Any

from region_rerank.errors import ConfigError

__all__ = [
    "DTYPE_NAMES",
    "resolve_device",
    "resolve_dtype",
    "resolve_device_dtype",
    "from_pretrained",
]

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


def from_pretrained(auto_class: Any, name: str, *, dtype: Any, **kwargs: Any) -> Any:
    """``auto_class.from_pretrained(name, ...)`` loading the weights in ``dtype``.

    transformers 5 names the argument ``dtype``; releases before 4.56 only know
    ``torch_dtype`` (and ignore ``dtype``, loading float32).
    """
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    return auto_class.from_pretrained(name, **{key: dtype}, **kwargs)

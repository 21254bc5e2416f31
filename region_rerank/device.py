"""Device and dtype resolution (``"auto"`` picks cuda, then mps, then cpu)."""

from __future__ import annotations

from typing import Any

from region_rerank.errors import ConfigError

__all__ = ["resolve_device", "resolve_dtype"]

_DTYPES = ("auto", "float32", "float16", "bfloat16")


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
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not allowed; choose one of {list(_DTYPES)}")
    return getattr(torch, dtype)

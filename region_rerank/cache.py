"""A thread-safe, byte-bounded LRU cache of candidate embeddings, keyed by content.

Keys are digests of what the scorer sees (text and image bytes) plus the scorer's
identity and candidate-embedding config, so two ``Candidate`` objects with the same
content share one entry and a changed image gets a new one.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.types import Candidate

if TYPE_CHECKING:
    import torch

__all__ = ["EmbeddingCache", "candidate_key"]

logger = logging.getLogger(__name__)


def _update_with_image(h: Any, image: Any) -> None:
    """Feed an image's content (not its object identity) into the hash ``h``."""
    from PIL import Image

    if isinstance(image, Image.Image):
        h.update(f"pil:{image.mode}:{image.size}".encode())
        h.update(image.tobytes())
    elif isinstance(image, (bytes, bytearray, memoryview)):
        h.update(b"bytes:")
        h.update(bytes(image))
    elif isinstance(image, (str, Path)):
        text = str(image)
        path = Path(text) if len(text) < 4096 and "\n" not in text else None
        if path is not None and path.is_file():
            h.update(b"file:")
            h.update(path.read_bytes())
        else:
            h.update(b"str:")
            h.update(text.encode("utf-8", "surrogatepass"))
    else:
        arr = image.detach().cpu().numpy() if hasattr(image, "detach") else image
        import numpy as np

        arr = np.ascontiguousarray(np.asarray(arr))
        h.update(f"array:{arr.dtype}:{arr.shape}".encode())
        h.update(arr.tobytes())


def candidate_key(candidate: Candidate, namespace: str) -> str:
    """Content digest of ``candidate`` under ``namespace`` (scorer + embedding config)."""
    h = hashlib.blake2b(digest_size=20)
    h.update(namespace.encode())
    h.update(b"\x00text:")
    h.update((candidate.text or "").encode("utf-8", "surrogatepass"))
    for image in candidate.images:
        h.update(b"\x00img:")
        _update_with_image(h, image)
    return h.hexdigest()


class EmbeddingCache:
    """LRU cache from content key to a 1-D embedding tensor, bounded in bytes.

    Args:
        max_bytes: Upper bound of the summed ``tensor.nbytes`` of stored entries. ``0``
            disables caching.

    Entries that are not finite 1-D tensors are treated as corrupt: dropped on read and
    counted in :attr:`corrupt`.
    """

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        check_range("max_bytes", max_bytes, 0)
        self.max_bytes = int(max_bytes)
        self._data: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.corrupt = 0

    @property
    def nbytes(self) -> int:
        """Bytes currently held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> torch.Tensor | None:
        """Return the embedding for ``key`` (marking it recently used) or ``None``."""
        import torch

        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            if value.ndim != 1 or not bool(torch.isfinite(value).all()):
                logger.warning(
                    "dropping corrupt cache entry %s (shape %s)", key, tuple(value.shape)
                )
                self._bytes -= value.nbytes
                del self._data[key]
                self.corrupt += 1
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: torch.Tensor) -> None:
        """Store ``value`` (detached), evicting least-recently-used entries over the bound."""
        size = value.nbytes
        if size > self.max_bytes:
            return
        stored = value.detach()
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._data[key] = stored
            self._bytes += size
            while self._bytes > self.max_bytes and self._data:
                _, evicted = self._data.popitem(last=False)
                self._bytes -= evicted.nbytes
                self.evictions += 1

    def clear(self) -> None:
        """Remove every entry (statistics are kept)."""
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def stats(self) -> dict[str, int]:
        """Hit / miss / eviction / corrupt counters, entries and bytes."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "corrupt": self.corrupt,
            "entries": len(self._data),
            "bytes": self._bytes,
        }

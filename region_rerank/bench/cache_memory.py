"""Peak memory of an :class:`~region_rerank.cache.EmbeddingCache` filled with many
candidate embeddings, measured in a fresh Python process.

The child process imports torch, warms the allocator with one batch, records its peak
resident set size, then stores ``n`` embeddings (rows of scorer-like
``64 x dim`` batches, under real candidate keys), checking the cache's byte count against
its bound after every insertion, and records the peak again. The difference is the memory
the cache costs, including what its byte bound does not count (keys, tensor headers).

Run directly: ``python -m region_rerank.bench.cache_memory N DIM MAX_BYTES...`` prints JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

__all__ = ["measure_cache_memory"]

_BATCH = 64


def _peak_rss_bytes() -> int:
    """Peak resident set size of this process. On Linux ``VmHWM`` (per address space: a
    child's ``ru_maxrss`` starts at its parent's size at fork and survives ``exec``)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _fill(n: int, dim: int, max_bytes: int) -> dict[str, Any]:
    import torch

    from region_rerank.cache import EmbeddingCache, candidate_key
    from region_rerank.types import Candidate

    torch.manual_seed(0)
    torch.nn.functional.normalize(torch.randn(_BATCH, dim), dim=-1)
    before = _peak_rss_bytes()
    cache = EmbeddingCache(max_bytes)
    worst = 0
    for start in range(0, n, _BATCH):
        batch = torch.nn.functional.normalize(torch.randn(_BATCH, dim), dim=-1)
        for j, row in enumerate(batch[: n - start]):
            key = candidate_key(Candidate(f"kb-{start + j}", f"entry {start + j}"), "bench")
            cache.put(key, row)
            worst = max(worst, cache.nbytes)
    after = _peak_rss_bytes()
    stats = cache.stats()
    return {
        "entries_inserted": n,
        "dim": dim,
        "max_bytes": max_bytes,
        "entries_held": stats["entries"],
        "evictions": stats["evictions"],
        "bytes_held": stats["bytes"],
        "max_bytes_held": worst,
        "bound_held": worst <= max_bytes,
        "peak_rss_growth_bytes": after - before,
    }


def measure_cache_memory(n: int, dim: int, bounds: list[int]) -> list[dict[str, Any]]:
    """Fill one cache per byte bound in ``bounds`` with ``n`` float32 embeddings of ``dim``,
    one after the other in a fresh process, and return their figures (entries held,
    evictions, byte counts, whether the bound held after every insertion, and the peak
    RSS growth, meaningful for the first cache only: later ones reuse freed memory).

    Raises:
        RuntimeError: The child process failed.
    """
    code = "import sys; from region_rerank.bench.cache_memory import _main; _main(sys.argv[1:])"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(n), str(dim), *(str(b) for b in bounds)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cache memory child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _main(argv: list[str]) -> None:
    n, dim, *bounds = (int(a) for a in argv)
    sys.stdout.write(json.dumps([_fill(n, dim, b) for b in bounds]) + "\n")


if __name__ == "__main__":  # pragma: no cover
    _main(sys.argv[1:])

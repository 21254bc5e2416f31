from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from region_rerank.cache import EmbeddingCache, candidate_key, scorer_namespace
from region_rerank.device import resolve_device, resolve_dtype
from region_rerank.errors import ConfigError
from region_rerank.images import load_image
from region_rerank.types import Candidate


def vec(value: float, dim: int = 4) -> torch.Tensor:
    return torch.full((dim,), float(value), dtype=torch.float32)


def test_byte_bound_and_lru_eviction() -> None:
    cache = EmbeddingCache(max_bytes=3 * 16)  # three float32 vectors of 4 dims
    for i in range(3):
        cache.put(f"k{i}", vec(i))
    assert cache.get("k0") is not None  # k0 becomes most recent
    cache.put("k3", vec(3))
    assert cache.get("k1") is None and cache.get("k0") is not None
    assert cache.nbytes == 48 <= cache.max_bytes and len(cache) == 3
    assert cache.evictions == 1
    cache.put("huge", torch.zeros(100))  # larger than the whole budget: not stored
    assert cache.get("huge") is None and cache.nbytes == 48


def test_replacing_a_key_keeps_the_byte_count_right() -> None:
    cache = EmbeddingCache(max_bytes=1000)
    cache.put("a", vec(1.0))
    cache.put("a", vec(2.0, dim=8))
    assert cache.nbytes == 32 and len(cache) == 1
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0


def test_zero_budget_disables_caching() -> None:
    cache = EmbeddingCache(max_bytes=0)
    cache.put("a", vec(1.0))
    assert cache.get("a") is None and cache.stats()["entries"] == 0
    with pytest.raises(ConfigError, match="max_bytes"):
        EmbeddingCache(max_bytes=-1)


def test_corrupt_entries_are_dropped() -> None:
    cache = EmbeddingCache()
    cache.put("nan", torch.tensor([1.0, float("nan")]))
    cache.put("2d", torch.zeros(2, 2))
    assert cache.get("nan") is None and cache.get("2d") is None
    assert cache.corrupt == 2 and cache.nbytes == 0


def test_keys_follow_content_not_identity(tmp_path: Path) -> None:
    red = Image.new("RGB", (4, 4), "red")
    path = tmp_path / "red.png"
    red.save(path)
    same = candidate_key(Candidate("a", "t", images=[red]), "ns")
    assert same == candidate_key(Candidate("b", "t", images=[red.copy()]), "ns")
    assert same != candidate_key(Candidate("a", "t2", images=[red]), "ns")
    assert same != candidate_key(Candidate("a", "t", images=[red]), "other-scorer")
    assert same != candidate_key(Candidate("a", "t", images=[Image.new("RGB", (4, 4))]), "ns")
    by_path = candidate_key(Candidate("a", "t", images=[str(path)]), "ns")
    assert by_path == candidate_key(Candidate("a", "t", images=[path]), "ns")
    Image.new("RGB", (4, 4), "blue").save(path)  # same path, new content -> new key
    assert by_path != candidate_key(Candidate("a", "t", images=[path]), "ns")
    arr = np.zeros((2, 2, 3), np.uint8)
    assert candidate_key(Candidate("a", images=[arr]), "ns") == candidate_key(
        Candidate("a", images=[torch.from_numpy(arr.copy())]), "ns"
    )


def test_concurrent_puts_respect_the_bound() -> None:
    cache = EmbeddingCache(max_bytes=50 * 16)

    def worker(offset: int) -> None:
        for i in range(200):
            cache.put(f"{offset}-{i}", vec(float(i)))
            cache.get(f"{offset}-{i // 2}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.nbytes == len(cache) * 16 <= cache.max_bytes


def test_device_and_dtype_resolution() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    assert resolve_dtype(torch.float16, "cpu") is torch.float16
    with pytest.raises(ConfigError, match="device"):
        resolve_device("tpu:0")
    with pytest.raises(ConfigError, match="dtype"):
        resolve_dtype("float8", "cpu")


def test_cached_rows_do_not_keep_the_whole_batch_alive() -> None:
    """A row of a scorer's batch output is stored as a compact copy, so the byte bound
    counts what the cache really holds."""
    batch = torch.randn(64, 128)
    cache = EmbeddingCache(max_bytes=10 * 128 * 4)
    cache.put("row", batch[3])
    stored = cache.get("row")
    assert stored is not None and torch.equal(stored, batch[3])
    assert stored.untyped_storage().nbytes() == stored.nbytes == 512
    batch[3].zero_()  # the caller reusing its buffer must not change the cached value
    assert cache.get("row").abs().sum() > 0  # type: ignore[union-attr]


def test_keys_do_not_collide_across_field_boundaries() -> None:
    text_only = Candidate("a", "x\x00img:bytes:abc")
    text_and_image = Candidate("a", "x", images=[b"abc"])
    assert candidate_key(text_only, "ns") != candidate_key(text_and_image, "ns")
    one_image = Candidate("a", images=[b"abcdef"])
    two_images = Candidate("a", images=[b"abc", b"def"])
    assert candidate_key(one_image, "ns") != candidate_key(two_images, "ns")
    assert candidate_key(Candidate("a", "b"), "n") != candidate_key(Candidate("a", "\x00b"), "n")


def test_keys_follow_decoded_content_of_palette_and_exif_images() -> None:
    """Same raw bytes but different decoded pixels (palette, EXIF orientation) -> new key."""
    red, blue = Image.new("P", (4, 2), 0), Image.new("P", (4, 2), 0)
    red.putpalette([255, 0, 0] * 256)
    blue.putpalette([0, 0, 255] * 256)
    assert load_image(red).getpixel((0, 0)) != load_image(blue).getpixel((0, 0))
    assert candidate_key(Candidate("a", images=[red]), "ns") != candidate_key(
        Candidate("a", images=[blue]), "ns"
    )
    upright = Image.new("RGB", (4, 2), "red")
    upright.paste((0, 255, 0), (0, 0, 1, 2))
    rotated = upright.copy()
    rotated.getexif()[0x0112] = 6  # "rotate 90 CW" on decode
    assert load_image(rotated).size != load_image(upright).size
    assert candidate_key(Candidate("a", images=[upright]), "ns") != candidate_key(
        Candidate("a", images=[rotated]), "ns"
    )


class _Scorer:
    """Stand-in for a scorer object; only its identity matters for the namespace."""

    name = "s"


def test_scorer_namespace_is_never_reused_by_a_later_object() -> None:
    first = _Scorer()
    ns = scorer_namespace(first)
    assert ns == scorer_namespace(first)
    assert ns != scorer_namespace(_Scorer())
    address = id(first)
    del first  # freed at once by reference counting; its address is free for reuse
    later = _Scorer()
    for _ in range(10_000):
        if id(later) == address:
            break
        later = _Scorer()
    else:
        pytest.skip("CPython did not reuse the freed address in 10000 allocations")
    assert scorer_namespace(later) != ns


def test_long_base64_image_strings_are_keyed_not_stat_failures() -> None:
    import base64

    b64 = base64.b64encode(b"\x00" * 600).decode()  # 800 chars, one "file name" > 255
    assert "/" not in b64 and 255 < len(b64) < 4096
    key = candidate_key(Candidate("a", images=[b64]), "ns")
    assert key == candidate_key(Candidate("b", images=[b64]), "ns")
    assert key != candidate_key(Candidate("a", images=[b64[:-4] + "AQ=="]), "ns")

"""SHA-256 checksums of shipped and saved weights (written beside them as ``.sha256``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from region_rerank.errors import ConfigError

__all__ = ["checked_metadata", "sha256_of", "verify_checksum"]


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: str | Path) -> str:
    """Check ``path`` against the digest in its ``.sha256`` sibling and return it.

    Raises:
        ConfigError: The checksum file is missing, or the digests differ (a corrupted or
            tampered file).
    """
    path = Path(path)
    checksum = path.with_suffix(".sha256")
    if not checksum.is_file():
        raise ConfigError(f"checksum file {str(checksum)!r} is missing")
    expected = checksum.read_text().strip()
    actual = sha256_of(path)
    if actual != expected:
        raise ConfigError(f"checksum mismatch for {str(path)!r}: expected {expected}, got {actual}")
    return actual


def checked_metadata(path: Path, what: str, train_hint: str, verify: bool) -> dict[str, str]:
    """The metadata of the safetensors file ``path`` after checking it exists and, with
    ``verify``, its checksum.

    Args:
        path: The weights file.
        what: What the weights are, for the message ("demo detector weights").
        train_hint: How to make them, for the message of a missing file.
        verify: Check the ``.sha256`` checksum.

    Raises:
        ConfigError: A missing file or checksum, or a checksum mismatch.
    """
    from safetensors import safe_open

    if not path.is_file():
        raise ConfigError(f"{what} not found at {str(path)!r}; train them with {train_hint}")
    if verify:
        verify_checksum(path)
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})

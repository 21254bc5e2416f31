"""Typed exceptions raised by region-rerank.

Every error the library raises on bad input derives from :class:`RegionRerankError`, so a
host pipeline can catch one class. Each subclass also derives from the matching builtin
(``ValueError``, ``TypeError``...) so generic handlers keep working.
"""

from __future__ import annotations

import os

__all__ = [
    "RegionRerankError",
    "ConfigError",
    "ImageLoadError",
    "ImageTooLargeError",
    "URLFetchDisabledError",
    "InvalidBoxError",
    "CandidateError",
    "CropperError",
    "CropperTimeoutError",
    "ScorerError",
    "UnsafeWeightsError",
    "ModelLoadError",
    "InputTypeError",
    "MissingQueryImageError",
    "DatasetFormatError",
]


class RegionRerankError(Exception):
    """Base class of every error raised by region-rerank."""


class ConfigError(RegionRerankError, ValueError):
    """A configuration value is out of range; the message names the field and what is allowed."""


class ImageLoadError(RegionRerankError, ValueError):
    """An image input could not be decoded (missing file, corrupt bytes, unsupported type...)."""


class ImageTooLargeError(ImageLoadError):
    """An image exceeds the configured pixel budget (decompression-bomb guard)."""


class URLFetchDisabledError(ImageLoadError):
    """An http(s) URL was given as an image while URL fetching is disabled."""


class InvalidBoxError(RegionRerankError, ValueError):
    """A box is NaN/inf, inverted, zero-area or otherwise unusable."""


class CandidateError(RegionRerankError, ValueError):
    """A candidate list or candidate is unusable (e.g. a candidate with neither text nor image)."""


class CropperError(RegionRerankError, RuntimeError):
    """A cropper failed to produce a decision."""


class CropperTimeoutError(CropperError):
    """A cropper did not decide within ``RerankerConfig.crop_timeout``."""


class ScorerError(RegionRerankError, RuntimeError):
    """A scorer failed to embed or score."""


class UnsafeWeightsError(ConfigError):
    """A model folder or hub id only offers pickled weights (``.bin`` / ``.pt``), which can
    run code when loaded; they are refused unless the caller opts in (``allow_pickle=True``)."""


class ModelLoadError(ConfigError):
    """A model-backed component (scorer, detector, VLM) cannot be built: the hub id or folder
    does not exist, is unreachable offline, or holds no usable model. Raised on first use in
    both ``on_error`` modes: a component that cannot load is a configuration error, not a
    bad query."""


class InputTypeError(RegionRerankError, TypeError):
    """An argument has the wrong type (e.g. ``Query.question=None``, a pool entry that is
    not a :class:`~region_rerank.types.Candidate`); the message names it and what is expected."""


class MissingQueryImageError(RegionRerankError, ValueError):
    """An adapter (LlamaIndex, LangChain) was asked to re-rank without a query image."""


class DatasetFormatError(RegionRerankError, ValueError):
    """A dataset file is malformed; the message names the file, the 1-based line (when
    the format has lines) and what is wrong.

    Attributes:
        path: The offending file.
        line: 1-based line number, or ``None`` (e.g. an entry of a single JSON object).
        reason: What is wrong, without the location.
    """

    def __init__(self, path: str | os.PathLike[str], line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")

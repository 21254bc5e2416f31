"""The spec registry's building blocks: one :class:`ComponentSpec` per kind of cropper or
scorer (its builder, whether it needs the re-ranker's scorer, its help text).

The two registries live beside their components (:mod:`region_rerank.croppers.specs`,
:mod:`region_rerank.scorers.specs`); :mod:`region_rerank.specs` joins them for the factory,
the CLI help, the re-ranker and the docs. No list of specs is written anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from region_rerank.errors import ConfigError
from region_rerank.images import ImageLoadOptions
from region_rerank.model_options import ModelOptions

__all__ = ["ComponentSpec", "BuildArgs", "split_spec", "lookup"]


@dataclass(frozen=True)
class BuildArgs:
    """What a builder gets: the spec's argument (``MODEL`` / ``WEIGHTS`` / ``FRACTION`` after
    the colon, or ``None``) and the build options.

    Attributes:
        arg: The spec's argument.
        model_options: How a model-backed component loads its model.
        image_options: How a cropper decodes query images (``None``: the defaults).
        scorer: The re-ranker's scorer, for the croppers that need one.
        threshold: Detector threshold / similarity margin / the proposal policy's crop gate
            (``None``: the cropper's).
    """

    arg: str | None
    model_options: ModelOptions = field(default_factory=ModelOptions)
    image_options: ImageLoadOptions | None = None
    scorer: Any = None
    threshold: float | None = None


@dataclass(frozen=True)
class ComponentSpec:
    """One kind of component.

    Attributes:
        kind: The spec's name (before the colon).
        arg: What may follow the colon (``"MODEL"``, ``"WEIGHTS"``, ``"FRACTION"``), or
            ``None`` when nothing may.
        arg_required: The argument must be given.
        needs_scorer: The component scores views with the re-ranker's bi-encoder.
        help: One line for the CLI help and the docs table.
        build: Builds the component from :class:`BuildArgs`.
    """

    kind: str
    arg: str | None
    arg_required: bool
    needs_scorer: bool
    help: str
    build: Callable[[BuildArgs], Any]

    @property
    def usage(self) -> str:
        """``kind``, ``kind:ARG`` or ``kind[:ARG]``."""
        if self.arg is None:
            return self.kind
        return f"{self.kind}:{self.arg}" if self.arg_required else f"{self.kind}[:{self.arg}]"


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"kind:arg"`` -> ``("kind", "arg")``; the kind lower-cased, an empty arg ``None``."""
    if not isinstance(spec, str):
        raise ConfigError(f"a component spec must be a str, got {type(spec).__name__}")
    kind, _, arg = spec.partition(":")
    return kind.strip().lower(), (arg.strip() or None)


def lookup(
    registry: Mapping[str, ComponentSpec], spec: str, what: str
) -> tuple[ComponentSpec, str | None]:
    """The entry of ``spec`` in ``registry`` and its argument.

    Raises:
        ConfigError: Unknown kind, a missing required argument, or an argument given to a
            kind that takes none.
    """
    kind, arg = split_spec(spec)
    entry = registry.get(kind)
    if entry is None:
        usages = [e.usage for e in registry.values()]
        raise ConfigError(f"unknown {what} {spec!r}; use one of {usages}")
    if entry.arg_required and arg is None:
        need = "a model" if entry.arg == "MODEL" else str(entry.arg)
        raise ConfigError(f"{what} spec {spec!r} needs {need}: '{entry.kind}:{entry.arg}'")
    if entry.arg is None and arg is not None:
        raise ConfigError(f"{what} spec {spec!r} takes no argument: use '{entry.kind}'")
    return entry, arg

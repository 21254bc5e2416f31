"""How model-backed components load and place their weights: one options object for all.

Every scorer and cropper that loads a model (:class:`~region_rerank.scorers.clip.ClipScorer`,
the sentence-transformers scorers, :class:`~region_rerank.demo.scorer.DemoScorer`,
:class:`~region_rerank.croppers.vlm.VLMCropper`,
:class:`~region_rerank.croppers.grounding.GroundingCropper`,
:class:`~region_rerank.croppers.proposal.ProposalPolicyCropper`) takes it as the
``model_options=`` constructor argument; the factory, the re-ranker, the adapters and the CLI
pass it on to the components they build from specs. Behaviour settings stay in each
component's own config; how images are decoded is the separate ``image_options=``
(:class:`~region_rerank.images.ImageLoadOptions`).

Example:
    >>> from region_rerank import ModelOptions
    >>> ModelOptions(device="cpu", dtype="float32")
    ModelOptions(device='cpu', dtype='float32', allow_pickle=False, trust_remote_code=False)
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any

from region_rerank.device import DTYPE_NAMES
from region_rerank.errors import ConfigError

__all__ = [
    "ModelOptions",
    "model_options_or_default",
    "add_model_option_args",
    "model_options_from_args",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelOptions:
    """Where and how a component loads its model; validated on creation.

    Attributes:
        device: ``"auto"`` (cuda, then mps, then cpu), a device string or a ``torch.device``.
            An injected model (``model_obj=``) stays where it is unless a device is named.
        dtype: ``"auto"`` (the component's GPU default, float32 on CPU), ``"float32"``,
            ``"float16"``, ``"bfloat16"`` or a ``torch.dtype``. Embeddings are returned as
            float32 whatever the weights' dtype.
        allow_pickle: Also accept pickled weights (``pytorch_model.bin``, ``.pt``). Off by
            default: only safetensors load, since unpickling can execute code.
        trust_remote_code: Passed to ``from_pretrained``: runs Python code from the model
            repository (a warning is logged when on).
    """

    device: Any = "auto"
    dtype: Any = "auto"
    allow_pickle: bool = False
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        for name in ("allow_pickle", "trust_remote_code"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be True or False")
        if isinstance(self.device, str):
            if not self.device.strip():
                raise ConfigError("device='' must be 'auto' or a torch device such as 'cpu'")
        elif self.device is not None and type(self.device).__name__ != "device":
            raise ConfigError(
                f"device={self.device!r} must be 'auto', a device string or a torch.device"
            )
        if isinstance(self.dtype, str):
            if self.dtype not in DTYPE_NAMES:
                raise ConfigError(
                    f"dtype={self.dtype!r} is not allowed; choose one of {list(DTYPE_NAMES)}"
                )
        elif self.dtype is not None and type(self.dtype).__name__ != "dtype":
            raise ConfigError(f"dtype={self.dtype!r} must be a dtype name or a torch.dtype")

    @property
    def explicit_device(self) -> bool:
        """A device was named (not ``"auto"`` / ``None``): injected models are moved there."""
        return self.device is not None and self.device != "auto"

    @property
    def explicit_dtype(self) -> bool:
        """A dtype was named (not ``"auto"`` / ``None``): injected models are cast to it."""
        return self.dtype is not None and self.dtype != "auto"

    def place(self, model: Any) -> Any:
        """An injected model moved to the named device and cast to the named dtype
        (``model.to``; nothing for ``"auto"``)."""
        from region_rerank.device import resolve_device, resolve_dtype

        if self.explicit_device:
            model = model.to(resolve_device(self.device))
        if self.explicit_dtype:
            model = model.to(resolve_dtype(self.dtype, "cpu"))  # a named dtype is device-free
        return model

    def warn_if_remote_code(self, component: str, model_id: str) -> None:
        """Log a warning when ``trust_remote_code`` is on for ``model_id``."""
        if self.trust_remote_code:
            logger.warning(
                "%s(%r): trust_remote_code=True will execute code from the model repository; "
                "only enable it for repositories you trust",
                component,
                model_id,
            )


def model_options_or_default(options: ModelOptions | None) -> ModelOptions:
    """``options``, or the defaults when ``None``.

    Raises:
        ConfigError: ``options`` is something else (a dict, a device string...).
    """
    if options is None:
        return ModelOptions()
    if not isinstance(options, ModelOptions):
        raise ConfigError(
            f"model_options must be a ModelOptions, got {type(options).__name__}: e.g. "
            "model_options=ModelOptions(device='cpu', dtype='float32')"
        )
    return options


def add_model_option_args(parser: argparse.ArgumentParser, *, device: str = "auto") -> None:
    """Add ``--device`` and ``--dtype`` (the CLI's :class:`ModelOptions`) to ``parser``."""
    parser.add_argument("--device", default=device, help=f"auto | cpu | cuda | mps ({device})")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPE_NAMES,
        help="weights' dtype of the models loaded (auto: float16 on GPU, float32 on CPU)",
    )


def model_options_from_args(args: argparse.Namespace) -> ModelOptions:
    """The :class:`ModelOptions` of a command parsed with :func:`add_model_option_args`."""
    return ModelOptions(device=args.device, dtype=args.dtype)

"""Loading shared by the sentence-transformers scorers (bi-encoder and cross-encoder)."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from region_rerank._optional import require
from region_rerank._pickling import PicklesWithoutLocks
from region_rerank.device import pickle_refused_message, resolve_device
from region_rerank.errors import ConfigError, ModelLoadError, UnsafeWeightsError

__all__ = ["progress_enabled", "warn_remote_code", "load_st_model", "LazySTModel"]

logger = logging.getLogger(__name__)


def progress_enabled(log: logging.Logger) -> bool:
    """sentence-transformers' convention: progress bars only at INFO or DEBUG level."""
    return log.getEffectiveLevel() in (logging.INFO, logging.DEBUG)


def warn_remote_code(feature: str, model_id: str) -> None:
    """Log that ``trust_remote_code=True`` will run code from ``model_id``'s repository."""
    logger.warning(
        "%s(%r, trust_remote_code=True) will execute code from the model repository; only "
        "enable it for repositories you trust",
        feature,
        model_id,
    )


def load_st_model(
    cls_name: str,
    *,
    feature: str,
    model_id: str,
    model_obj: Any,
    device: Any,
    trust_remote_code: bool,
    model_kwargs: dict[str, Any],
    required_method: str,
    what: str,
    allow_pickle: bool = False,
) -> Any:
    """Load (or adopt) a sentence-transformers model and put it in eval mode.

    Args:
        cls_name: ``"SentenceTransformer"`` or ``"CrossEncoder"``.
        feature: The scorer class, named in errors.
        model_id: Model name or folder.
        model_obj: An already loaded model, used instead of loading ``model_id``.
        device: ``"auto"`` or a device. An injected ``model_obj`` is moved only when this
            is not ``"auto"`` / ``None``.
        trust_remote_code: Passed to the constructor.
        model_kwargs: Extra constructor keyword arguments.
        required_method: The method the model must have (``"encode"``, ``"predict"``).
        what: How the model is described in errors (``"a sentence-transformers model"``).
        allow_pickle: Also accept pickled weights; otherwise only safetensors load
            (``use_safetensors=True`` is added to the constructor's ``model_kwargs``).

    Raises:
        ImportError: sentence-transformers is not installed.
        UnsafeWeightsError: Only pickled weights exist and ``allow_pickle`` is False.
        ModelLoadError: The model cannot be loaded.
        ConfigError: The model lacks ``required_method``.
    """
    st = require("sentence_transformers", feature=feature)
    model = model_obj
    if model is None:
        kwargs = dict(model_kwargs)
        if allow_pickle:
            logger.warning(
                "%s(%r, allow_pickle=True): pickled weights may execute code; only use it "
                "for models you trust",
                feature,
                model_id,
            )
        else:
            kwargs["model_kwargs"] = {**kwargs.get("model_kwargs", {}), "use_safetensors": True}
        try:
            model = getattr(st, cls_name)(
                model_id,
                device=str(resolve_device(device)),
                trust_remote_code=trust_remote_code,
                **kwargs,
            )
        except OSError as exc:
            if allow_pickle or "safetensors" not in str(exc):
                raise ModelLoadError(
                    f"{feature} cannot load model {model_id!r}: {exc}. Pass {what} name or a "
                    f"folder written by {cls_name}.save"
                ) from exc
            raise UnsafeWeightsError(pickle_refused_message(model_id, exc)) from exc
        except (ValueError, KeyError) as exc:
            raise ModelLoadError(
                f"{feature} cannot load model {model_id!r}: {exc}. Pass {what} name or a "
                f"folder written by {cls_name}.save"
            ) from exc
    elif device not in (None, "auto"):
        model = model.to(resolve_device(device))
    if not callable(getattr(model, required_method, None)):
        raise ConfigError(
            f"{feature} needs a sentence-transformers {cls_name}; {model_id!r} is "
            f"{type(model).__name__}, which has no {required_method}()"
        )
    model.eval()
    return model


class LazySTModel(PicklesWithoutLocks):
    """Thread-safe lazy loading and the ``model`` / ``device`` properties shared by the
    sentence-transformers scorers. Subclasses set the class attributes and may check the
    loaded model in :meth:`_on_loaded`."""

    _feature: str = ""
    _st_class: str = ""
    _required_method: str = ""
    _what: str = ""

    def _init_model(
        self,
        model: str | os.PathLike[str],
        model_obj: Any,
        device: Any,
        trust_remote_code: bool,
        model_kwargs: dict[str, Any] | None,
        allow_pickle: bool = False,
    ) -> None:
        if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
            raise ConfigError(f"model must be a model name or a folder path, got {model!r}")
        self.model_id = str(model)
        self.trust_remote_code = bool(trust_remote_code)
        self.allow_pickle = bool(allow_pickle)
        self.model_kwargs = dict(model_kwargs or {})
        self._device_arg = device
        self._model: Any = model_obj
        self._loaded = False
        self._load_lock = threading.Lock()
        if self.trust_remote_code:
            warn_remote_code(self._feature, self.model_id)

    def _on_loaded(self, model: Any) -> None:
        """Validate or inspect a freshly loaded model (raise ``ConfigError`` to refuse it)."""

    def load(self) -> Any:
        """Load the model now (otherwise done on first use). Returns self.

        Raises:
            ModelLoadError: The model cannot be loaded.
        """
        self._load()
        return self

    def _load(self) -> Any:
        """Load the model once, even when several threads ask at once."""
        if self._loaded:
            return self._model
        with self._load_lock:
            if not self._loaded:
                model = load_st_model(
                    self._st_class,
                    feature=self._feature,
                    model_id=self.model_id,
                    model_obj=self._model,
                    device=self._device_arg,
                    trust_remote_code=self.trust_remote_code,
                    model_kwargs=self.model_kwargs,
                    required_method=self._required_method,
                    what=self._what,
                    allow_pickle=self.allow_pickle,
                )
                self._on_loaded(model)
                self._model = model
                self._loaded = True
                logger.debug("loaded %s %s on %s", self._st_class, self.model_id, self.device)
        return self._model

    @property
    def model(self) -> Any:
        """The underlying sentence-transformers model (loads it on first access)."""
        return self._load()

    @property
    def device(self) -> Any:
        """The torch device the model runs on."""
        if self._model is not None:
            return self._model.device
        return resolve_device(self._device_arg)

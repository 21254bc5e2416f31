"""Loading shared by the sentence-transformers scorers (bi-encoder and cross-encoder)."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from region_rerank._optional import require
from region_rerank._pickling import PicklesWithoutLocks
from region_rerank.device import (
    dtype_keyword,
    pickle_refused_message,
    resolve_device,
    resolve_dtype,
)
from region_rerank.errors import ConfigError, ModelLoadError, UnsafeWeightsError
from region_rerank.model_options import ModelOptions, model_options_or_default

__all__ = ["progress_enabled", "load_st_model", "LazySTModel"]

logger = logging.getLogger(__name__)


def progress_enabled(log: logging.Logger) -> bool:
    """sentence-transformers' convention: progress bars only at INFO or DEBUG level."""
    return log.getEffectiveLevel() in (logging.INFO, logging.DEBUG)


def load_st_model(
    cls_name: str,
    *,
    feature: str,
    model_id: str,
    model_obj: Any,
    options: ModelOptions,
    model_kwargs: dict[str, Any],
    required_method: str,
    what: str,
) -> Any:
    """Load (or adopt) a sentence-transformers model and put it in eval mode.

    Args:
        cls_name: ``"SentenceTransformer"`` or ``"CrossEncoder"``.
        feature: The scorer class, named in errors.
        model_id: Model name or folder.
        model_obj: An already loaded model, used instead of loading ``model_id``.
        options: Device, dtype, pickled weights and remote code. An injected
            ``model_obj`` is moved / cast only to what is named; a loaded model gets a named
            dtype through sentence-transformers' ``model_kwargs`` (``"auto"`` keeps the
            checkpoint's).
        model_kwargs: Extra constructor keyword arguments.
        required_method: The method the model must have (``"encode"``, ``"predict"``).
        what: How the model is described in errors (``"a sentence-transformers model"``).

    Raises:
        ImportError: sentence-transformers is not installed.
        UnsafeWeightsError: Only pickled weights exist and ``allow_pickle`` is False.
        ModelLoadError: The model cannot be loaded.
        ConfigError: The model lacks ``required_method``.
    """
    st = require("sentence_transformers", feature=feature)
    allow_pickle = options.allow_pickle
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
        if options.explicit_dtype:
            dtype = resolve_dtype(options.dtype, resolve_device(options.device))
            kwargs["model_kwargs"] = {**kwargs.get("model_kwargs", {}), dtype_keyword(): dtype}
        try:
            model = getattr(st, cls_name)(
                model_id,
                device=str(resolve_device(options.device)),
                trust_remote_code=options.trust_remote_code,
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
    else:
        model = options.place(model)
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
        model_options: ModelOptions | None,
        model_kwargs: dict[str, Any] | None,
    ) -> None:
        if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
            raise ConfigError(f"model must be a model name or a folder path, got {model!r}")
        self.model_id = str(model)
        self.model_options = model_options_or_default(model_options)
        self.model_kwargs = dict(model_kwargs or {})
        self._model: Any = model_obj
        self._loaded = False
        self._load_lock = threading.Lock()
        self.model_options.warn_if_remote_code(self._feature, self.model_id)

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
                    options=self.model_options,
                    model_kwargs=self.model_kwargs,
                    required_method=self._required_method,
                    what=self._what,
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
        return resolve_device(self.model_options.device)

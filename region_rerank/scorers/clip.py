"""Bi-encoder scorer for transformers CLIP, SigLIP and SigLIP2 checkpoints.

The model and processor load lazily on first use with ``AutoModel`` / ``AutoProcessor``.
Besides PIL images, :class:`ClipScorer` accepts pixel values already cropped and resized
on the device (:class:`~region_rerank.scorers.base.TensorImageScorer`):
:attr:`ClipScorer.image_spec` describes the processor's geometry so that
:func:`region_rerank.images.crop_resize` can reproduce it.

Example:
    >>> scorer = ClipScorer("openai/clip-vit-base-patch32")  # doctest: +SKIP
    >>> scorer.embed_texts(["a red car"]).shape  # doctest: +SKIP
    torch.Size([1, 512])
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from region_rerank._pickling import PicklesWithoutLocks
from region_rerank._validate import check_range
from region_rerank.device import (
    from_pretrained,
    resolve_device,
    resolve_device_dtype,
)
from region_rerank.errors import ConfigError, ModelLoadError, ScorerError, UnsafeWeightsError
from region_rerank.images import load_image
from region_rerank.model_options import ModelOptions, model_options_or_default
from region_rerank.scorers.base import (
    BaseEmbeddingScorer,
    CandidateEmbeddingConfig,
    ImageSpec,
    l2_normalize,
)

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["ClipScorer"]

logger = logging.getLogger(__name__)

_IMAGE_KEYS = ("pixel_values", "pixel_attention_mask", "spatial_shapes")
_TEXT_KEYS = ("input_ids", "attention_mask", "position_ids")
# PIL.Image.Resampling values -> crop_resize interpolation
_RESAMPLE = {0: "bilinear", 1: "bilinear", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic"}


#: The model of the ``clip`` spec and of ``ClipScorer()``.
DEFAULT_MODEL = "openai/clip-vit-base-patch32"


def _size_get(size: Any, key: str) -> Any:
    """Read ``key`` from a size spec: a dict (transformers 4) or a ``SizeDict`` (5)."""
    if size is None:
        return None
    if isinstance(size, Mapping):
        return size.get(key)
    return getattr(size, key, None)


def _features(output: Any, what: str) -> torch.Tensor:
    """The embedding of a ``get_*_features`` call, whatever the transformers version."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ScorerError(f"get_{what}_features returned {type(output).__name__} without an embedding")


def _interpolation(resample: Any) -> str:
    """Map a processor's ``resample`` (PIL enum, int or torchvision mode) to a mode name."""
    name = str(getattr(resample, "value", resample)).lower()
    if "bicubic" in name or "cubic" in name:
        return "bicubic"
    if "bilinear" in name or "linear" in name:
        return "bilinear"
    try:
        return _RESAMPLE.get(int(getattr(resample, "value", resample)), "bicubic")
    except (TypeError, ValueError):
        return "bicubic"


class ClipScorer(PicklesWithoutLocks, BaseEmbeddingScorer):
    """CLIP / SigLIP / SigLIP2 bi-encoder (transformers).

    Args:
        model: Hub id (``"openai/clip-vit-base-patch32"``, ``"google/siglip-base-patch16-224"``)
            or a local folder saved with ``save_pretrained``.
        model_options: Device, dtype, pickled weights and remote code
            (:class:`~region_rerank.model_options.ModelOptions`; ``"auto"`` dtype is float16
            on GPU). An injected ``model_obj`` is moved / cast only to what is named.
        batch_size: Images / texts per forward pass.
        candidate_config: How candidate images and text combine (see
            :class:`~region_rerank.scorers.base.CandidateEmbeddingConfig`).
        model_obj: An already loaded model with ``get_image_features`` / ``get_text_features``;
            ``model`` is then only used to find the processor when ``processor`` is None.
        processor: An already loaded processor (tokenizer + image processor).
        max_text_tokens: Texts are cut to this many tokens (default: the model's limit).

    Raises:
        ConfigError: A setting is invalid, or (on first use) the model cannot be loaded or is
            not a dual encoder.
    """

    name = "clip"

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        model_options: ModelOptions | None = None,
        batch_size: int = 32,
        candidate_config: CandidateEmbeddingConfig | None = None,
        model_obj: Any = None,
        processor: Any = None,
        max_text_tokens: int | None = None,
    ) -> None:
        if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
            raise ConfigError(f"model must be a hub id or a folder path, got {model!r}")
        check_range("batch_size", batch_size, 1)
        if max_text_tokens is not None:
            check_range("max_text_tokens", max_text_tokens, 1)
        self.model_options = model_options_or_default(model_options)
        self.model_id = str(model)
        self.name = f"clip:{self.model_id}"
        self.batch_size = int(batch_size)
        self.candidate_config = candidate_config or CandidateEmbeddingConfig()
        self._model: Any = model_obj
        self._processor: Any = processor
        self._max_text_tokens_arg = max_text_tokens
        self._image_processor: Any = None
        self._tokenizer: Any = None
        self._spec: ImageSpec | None = None
        self._loaded = False
        # Guards the one-time load, and the tokenizer, whose fast (Rust) backend must not
        # be reconfigured by one thread while another encodes.
        self._lock = threading.RLock()
        self.model_options.warn_if_remote_code("ClipScorer", self.model_id)

    # ------------------------------------------------------------------ loading
    def load(self) -> ClipScorer:
        """Load the model and processor now (otherwise done on first use). Returns self.

        Raises:
            ModelLoadError: The model or its processor cannot be loaded.
            UnsafeWeightsError: Only pickled weights exist and ``model_options.allow_pickle`` is
                False.
        """
        self._load()
        return self

    def _load(self) -> None:
        """Load the model and processor once, even when several threads ask at once."""
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                self._load_now()

    def _load_now(self) -> None:
        import torch

        opts = self.model_options
        model = self._model
        if model is None:
            device, dtype = resolve_device_dtype(opts.device, opts.dtype)
            model = self._from_pretrained(dtype).to(device)
        else:
            model = opts.place(model)
        for method in ("get_image_features", "get_text_features"):
            if not callable(getattr(model, method, None)):
                raise ConfigError(
                    f"ClipScorer needs a dual-encoder model with get_image_features and "
                    f"get_text_features (CLIP, SigLIP, SigLIP2...); {self.model_id!r} loaded as "
                    f"{type(model).__name__}, which has no {method}"
                )
        model.eval()
        processor = self._processor
        if processor is None:
            source = self.model_id
            if self._model is not None:
                source = getattr(model, "name_or_path", None) or self.model_id
            processor = self._load_processor(str(source))
        self._image_processor = getattr(processor, "image_processor", None)
        self._tokenizer = getattr(processor, "tokenizer", None)
        if self._image_processor is None or self._tokenizer is None:
            raise ConfigError(
                f"the processor of {self.model_id!r} ({type(processor).__name__}) needs both an "
                "image_processor and a tokenizer"
            )
        config = model.config
        self._model_type = str(getattr(config, "model_type", ""))
        text_config = getattr(config, "text_config", config)
        positions = getattr(text_config, "max_position_embeddings", None)
        self._max_text_tokens = int(self._max_text_tokens_arg or positions or 77)
        # SigLIP / SigLIP2 were trained on texts padded to the full length (last-token pooling).
        self._pad_to_max = self._model_type.startswith("siglip")
        self._naflex = hasattr(self._image_processor, "max_num_patches")
        self._model = model
        self._processor = processor
        self._param_dtype = next(model.parameters()).dtype
        self._torch = torch
        self._loaded = True
        logger.debug(
            "loaded %s (%s) on %s, dtype %s",
            self.model_id,
            type(model).__name__,
            self.device,
            self._param_dtype,
        )

    def _from_pretrained(self, dtype: Any) -> Any:
        from transformers import AutoModel

        try:
            return from_pretrained(
                AutoModel,
                self.model_id,
                dtype=dtype,
                allow_pickle=self.model_options.allow_pickle,
                trust_remote_code=self.model_options.trust_remote_code,
            )
        except UnsafeWeightsError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(
                f"ClipScorer cannot load model {self.model_id!r}: {exc}. Pass a hub id such as "
                "'openai/clip-vit-base-patch32' or a folder written by save_pretrained"
            ) from exc

    def _load_processor(self, source: str) -> Any:
        from transformers import AutoProcessor

        try:
            return AutoProcessor.from_pretrained(
                source, trust_remote_code=self.model_options.trust_remote_code
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(
                f"ClipScorer cannot load the processor of {source!r}: {exc}"
            ) from exc

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> Any:
        """The underlying transformers model (loads it on first access)."""
        self._load()
        return self._model

    @property
    def processor(self) -> Any:
        """The underlying transformers processor (loads it on first access)."""
        self._load()
        return self._processor

    @property
    def device(self) -> Any:
        """The torch device the model runs on (without loading the model when possible)."""
        if self._model is not None:
            return next(self._model.parameters()).device
        return resolve_device(self.model_options.device)

    @property
    def image_spec(self) -> ImageSpec:
        """Geometry and normalisation of the image processor, read from the loaded processor.

        For SigLIP2 (NaFlex) the spec is the square grid the processor picks for a square
        image; non-square crops are squashed to it on the tensor path.
        """
        self._load()
        if self._spec is None:
            self._spec = self._read_image_spec()
        return self._spec

    def _read_image_spec(self) -> ImageSpec:
        ip = self._image_processor
        mean = ip.image_mean if getattr(ip, "do_normalize", True) else (0.0, 0.0, 0.0)
        std = ip.image_std if getattr(ip, "do_normalize", True) else (1.0, 1.0, 1.0)
        mean_t = tuple(float(m) for m in (mean if isinstance(mean, Sequence) else [mean] * 3))
        std_t = tuple(float(s) for s in (std if isinstance(std, Sequence) else [std] * 3))
        interpolation = _interpolation(getattr(ip, "resample", 3))
        if self._naflex:
            side = math.isqrt(int(ip.max_num_patches)) * int(ip.patch_size)
            return ImageSpec((side, side), mean_t, std_t, False, interpolation, True)
        center_crop = bool(getattr(ip, "do_center_crop", False))
        if center_crop:
            crop = getattr(ip, "crop_size", None)
            shortest = _size_get(getattr(ip, "size", None), "shortest_edge")
            h, w = _size_get(crop, "height"), _size_get(crop, "width")
            if shortest is not None and (h != shortest or w != shortest):
                logger.warning(
                    "%s resizes the shortest edge to %s then crops %sx%s; the tensor path "
                    "approximates this with a centred square resized to the crop size",
                    self.model_id,
                    shortest,
                    h,
                    w,
                )
        else:
            size = getattr(ip, "size", None)
            h, w = _size_get(size, "height"), _size_get(size, "width")
            if h is None:
                h = w = _size_get(size, "shortest_edge")
        if h is None or w is None:
            raise ScorerError(f"cannot read the input size of {type(ip).__name__}")
        # The processors resize uint8 images (PIL or torchvision), so the tensor path may too.
        return ImageSpec((int(h), int(w)), mean_t, std_t, center_crop, interpolation, True)

    # ------------------------------------------------------------------ embedding
    def embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Embed images through the model's own processor; ``N x D`` float32, normalised."""
        self._load()
        if not images:
            return self._empty()
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = [load_image(img) for img in images[start : start + self.batch_size]]
            inputs = self._image_processor(images=batch, return_tensors="pt")
            chunks.append(self._image_forward({k: inputs[k] for k in _IMAGE_KEYS if k in inputs}))
        return self._torch.cat(chunks, 0)

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed texts, truncated to the model's text positions; ``N x D`` float32, normalised."""
        self._load()
        if not texts:
            return self._empty()
        torch = self._torch
        padding: Any = "max_length" if self._pad_to_max else True
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = [str(t) for t in texts[start : start + self.batch_size]]
            with self._lock:
                enc = self._tokenizer(
                    batch,
                    padding=padding,
                    truncation=True,
                    max_length=self._max_text_tokens,
                    return_tensors="pt",
                )
            inputs = {k: enc[k].to(self.device) for k in _TEXT_KEYS if k in enc}
            with torch.inference_mode():
                out = _features(self._model.get_text_features(**inputs), "text")
                emb = l2_normalize(out.float())
            chunks.append(emb.clone())
        return torch.cat(chunks, 0)

    def embed_pixel_values(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Embed an ``N x 3 x H x W`` batch prepared with :attr:`image_spec` (e.g. by
        :func:`region_rerank.images.crop_resize`); ``N x D`` float32, normalised."""
        self._load()
        spec = self.image_spec
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ScorerError(
                f"pixel_values must be N x 3 x H x W, got shape {tuple(pixel_values.shape)}"
            )
        if tuple(pixel_values.shape[-2:]) != spec.size:
            raise ScorerError(
                f"pixel_values are {tuple(pixel_values.shape[-2:])} but {self.model_id!r} expects "
                f"{spec.size}; resize with crop_resize(..., size=scorer.image_spec.size)"
            )
        if pixel_values.shape[0] == 0:
            return self._empty()
        chunks = []
        for start in range(0, pixel_values.shape[0], self.batch_size):
            batch = pixel_values[start : start + self.batch_size]
            inputs = self._patchify(batch) if self._naflex else {"pixel_values": batch}
            chunks.append(self._image_forward(inputs))
        return self._torch.cat(chunks, 0)

    def _patchify(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """NCHW -> SigLIP2 NaFlex inputs (patches, attention mask, spatial shapes)."""
        torch = self._torch
        ip = self._image_processor
        p = int(ip.patch_size)
        n, c, h, w = batch.shape
        gh, gw = h // p, w // p
        patches = batch.reshape(n, c, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1)
        patches = patches.reshape(n, gh * gw, p * p * c)
        total = int(ip.max_num_patches)
        mask = torch.zeros(n, total, dtype=torch.int32, device=batch.device)
        mask[:, : gh * gw] = 1
        if total > gh * gw:
            patches = torch.nn.functional.pad(patches, (0, 0, 0, total - gh * gw))
        shapes = torch.tensor([[gh, gw]] * n, dtype=torch.long, device=batch.device)
        return {"pixel_values": patches, "pixel_attention_mask": mask, "spatial_shapes": shapes}

    def _image_forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        torch = self._torch
        device = self.device
        moved = {}
        for key, value in inputs.items():
            value = value.to(device)
            if key == "pixel_values":
                value = value.to(self._param_dtype)
            moved[key] = value
        with torch.inference_mode():
            out = _features(self._model.get_image_features(**moved), "image")
            emb = l2_normalize(out.float())
        return emb.clone()

    def _empty(self) -> torch.Tensor:
        torch = self._torch
        config = self._model.config
        text_config = getattr(config, "text_config", config)
        dim: Any = (
            getattr(config, "projection_dim", None)
            or getattr(text_config, "projection_size", None)
            or getattr(text_config, "hidden_size", 0)
        )
        return torch.zeros(0, int(dim), dtype=torch.float32, device=self.device)

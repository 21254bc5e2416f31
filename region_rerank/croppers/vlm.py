"""The Region-R1 crop policy: a Qwen-VL model (optionally with a LoRA adapter) that answers
``NO_CROP_NEEDED`` or one ``image_zoom_in_tool`` call with a box (docs/method.md section 3).

Example:
    >>> from region_rerank import Query, VLMCropper  # doctest: +SKIP
    >>> cropper = VLMCropper("Qwen/Qwen2.5-VL-3B-Instruct", adapter="my/lora")  # doctest: +SKIP
    >>> cropper.decide(Query("photo.jpg", "When was this tower built?"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from region_rerank._optional import require
from region_rerank._pickling import PicklesWithoutLocks
from region_rerank._validate import check_choice, check_range
from region_rerank.boxes import CoordFrame
from region_rerank.croppers.base import BaseCropper
from region_rerank.croppers.vlm_output import (
    DEFAULT_PROMPT,
    check_prompt_template,
    decision_from_output,
)
from region_rerank.croppers.vlm_prompt import FAMILY_FRAMES, VLMPrompter
from region_rerank.device import from_pretrained, resolve_device_dtype
from region_rerank.errors import ConfigError, ModelLoadError, UnsafeWeightsError
from region_rerank.images import ImageLoadOptions, load_image
from region_rerank.model_options import ModelOptions, model_options_or_default
from region_rerank.types import CropDecision, Query

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["DEFAULT_MODEL", "DEFAULT_PROMPT", "FAMILY_FRAMES", "VLMCropperConfig", "VLMCropper"]

logger = logging.getLogger(__name__)

#: The reference policy's base model.
DEFAULT_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"


@dataclass(frozen=True)
class VLMCropperConfig:
    """Settings of :class:`VLMCropper`; validated on creation.

    Attributes:
        max_new_tokens: Generation budget per answer (reference: 256).
        do_sample: Sample in :meth:`VLMCropper.decide_batch` instead of greedy decoding.
        temperature: Sampling temperature (> 0), used when sampling.
        top_p: Nucleus sampling mass in (0, 1], used when sampling.
        batch_size: Queries per ``generate`` call.
        coord_frame: ``"auto"`` (from the model family) or an explicit :class:`CoordFrame`.
        min_pixels: Processor pixel floor of the resized image (``None``: the processor's).
        max_pixels: Processor pixel ceiling (``None``: the processor's).
        prompt_template: Instruction with ``{question}`` (and optionally
            ``{frame_instructions}``, ``{width}``, ``{height}``); ``None`` uses
            :data:`DEFAULT_PROMPT`.
        max_question_chars: Longer questions are cut to this many characters.
        pad: Grow accepted boxes by this fraction of their size on each side.
        min_box_size: Boxes narrower/shorter than this (original pixels) are rejected (FULL).
        min_crop_size: Grow accepted boxes to at least this many pixels per side (0: off).
        max_aspect_ratio: Images more elongated than this get FULL without generation (the
            Qwen-VL processors refuse ratios over 200).
    """

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 8
    coord_frame: CoordFrame | str = "auto"
    min_pixels: int | None = None
    max_pixels: int | None = None
    prompt_template: str | None = None
    max_question_chars: int = 2000
    pad: float = 0.0
    min_box_size: float = 1.0
    min_crop_size: float = 0.0
    max_aspect_ratio: float = 200.0

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "batch_size", "max_question_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}={value!r} must be an int >= 1")
        if not isinstance(self.do_sample, bool):
            raise ConfigError(f"do_sample={self.do_sample!r} must be True or False")
        check_range("temperature", self.temperature, 0, low_inclusive=False)
        check_range("top_p", self.top_p, 0, 1, low_inclusive=False)
        for name in ("pad", "min_box_size", "min_crop_size"):
            check_range(name, getattr(self, name), 0)
        check_range("max_aspect_ratio", self.max_aspect_ratio, 1)
        if self.coord_frame != "auto":
            allowed = ["auto", *(f.value for f in CoordFrame)]
            check_choice("coord_frame", self.coord_frame, allowed)
            object.__setattr__(self, "coord_frame", CoordFrame(self.coord_frame))
        for name in ("min_pixels", "max_pixels"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), 1)
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ConfigError(f"min_pixels={self.min_pixels} exceeds max_pixels={self.max_pixels}")
        if self.prompt_template is not None:
            check_prompt_template(self.prompt_template)


class VLMCropper(PicklesWithoutLocks, BaseCropper):
    """Crop policy backed by a Qwen-VL model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL).

    The model sees only the query image and question (never the candidates) and answers
    ``NO_CROP_NEEDED`` or one ``image_zoom_in_tool`` call; the box is converted from the
    family's coordinate frame to original-image pixels. Unparseable or invalid answers
    become FULL with a ``reason``; every decision keeps the generated text in ``raw_output``.
    Generation is batched with left padding (passed per call: the processor is not changed).

    Args:
        model: Hub id or local folder of the base model (loaded only when ``model_obj`` is
            not given; the processor is loaded from it when ``processor`` is not given).
        adapter: Folder or hub id of a peft LoRA adapter. Only applied to a model this class
            loads: wrap an injected ``model_obj`` with ``PeftModel`` yourself (applying it
            here would modify your object).
        model_options: Device, dtype (``"auto"``: bfloat16 on GPUs that support it, float16
            on other GPUs, float32 on CPU), pickled weights and remote code
            (:class:`~region_rerank.model_options.ModelOptions`); for a model this class loads.
        config: Generation and post-processing settings.
        model_obj: A ready ``*ForConditionalGeneration`` model (used as is, not moved).
        processor: A ready processor (used as is, never modified).
        image_options: How query images given as paths / bytes / arrays are decoded
            (:class:`~region_rerank.images.ImageLoadOptions`).

    Raises:
        ConfigError: Unknown model family with ``coord_frame="auto"``, or an adapter with
            an injected model.
        ImportError: An adapter without peft installed (``pip install "region-rerank[vlm]"``).
        ModelLoadError: The model, its processor or the adapter cannot be loaded.
    """

    name = "vlm"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        adapter: str | os.PathLike[str] | None = None,
        model_options: ModelOptions | None = None,
        config: VLMCropperConfig | None = None,
        model_obj: Any = None,
        processor: Any = None,
        image_options: ImageLoadOptions | None = None,
    ) -> None:
        self.config = config or VLMCropperConfig()
        self.adapter = None if adapter is None else str(adapter)
        self.model_options = model_options_or_default(model_options)
        self.image_options = image_options
        self.model_name = str(model)
        self.model_options.warn_if_remote_code("VLMCropper", self.model_name)
        if model_obj is not None and self.adapter is not None:
            raise ConfigError(
                "adapter= is only applied to a model VLMCropper loads itself; wrap model_obj "
                "with peft.PeftModel.from_pretrained(model_obj, adapter) before passing it"
            )
        try:
            self.processor = processor if processor is not None else self._load_processor()
            self.model = model_obj if model_obj is not None else self._load_model()
        except UnsafeWeightsError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(
                f"VLMCropper cannot load {self.model_name!r}: {exc}. Pass a hub id such as "
                f"{DEFAULT_MODEL!r} or a folder written by save_pretrained"
            ) from exc
        self._processor_lock = threading.Lock()
        self.model_type: str | None = getattr(
            getattr(self.model, "config", None), "model_type", None
        )
        self.prompter = VLMPrompter.from_processor(
            self.processor,
            self.model_type,
            coord_frame=self.config.coord_frame,
            min_pixels=self.config.min_pixels,
            max_pixels=self.config.max_pixels,
            template=self.config.prompt_template,
            max_question_chars=self.config.max_question_chars,
        )
        self.frame = self.prompter.frame
        logger.info(
            "VLMCropper ready: model=%s family=%s frame=%s adapter=%s",
            self.model_name,
            self.model_type,
            self.frame.value,
            self.adapter,
        )

    def _load_processor(self) -> Any:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(
            self.model_name, trust_remote_code=self.model_options.trust_remote_code
        )

    def _load_model(self) -> Any:
        from transformers import AutoModelForImageTextToText

        opts = self.model_options
        device, dtype = resolve_device_dtype(opts.device, opts.dtype, prefer_bf16=True)
        model = from_pretrained(
            AutoModelForImageTextToText,
            self.model_name,
            dtype=dtype,
            trust_remote_code=opts.trust_remote_code,
            allow_pickle=opts.allow_pickle,
        )
        if self.adapter is not None:
            peft = require("peft", feature="VLMCropper adapters")
            model = peft.PeftModel.from_pretrained(model, self.adapter)
            logger.info("VLMCropper: applied adapter %s", self.adapter)
        return model.to(device).eval()

    @property
    def device(self) -> Any:
        """The device of the model's (first) parameters; inputs are moved there."""
        return next(iter(self.model.parameters())).device

    def coordinate_frame_for(self, image: Any) -> tuple[CoordFrame, tuple[int, int] | None]:
        """The frame the model writes boxes in for ``image``, and the model-input size
        (see :meth:`VLMPrompter.coordinate_frame_for`)."""
        return self.prompter.coordinate_frame_for(image)

    def build_prompt(self, question: str, image_size: tuple[int, int]) -> str:
        """The instruction for one query (before the chat template is applied)."""
        return self.prompter.build_prompt(question, image_size)

    def _generate_chunk(
        self, images: list[Image.Image], prompts: list[str], gen_kwargs: dict[str, Any]
    ) -> tuple[list[str], list[tuple[int, int] | None]]:
        import torch

        extra: dict[str, Any] = {}
        if self.config.min_pixels or self.config.max_pixels:
            pr = self.prompter
            extra["size"] = {"shortest_edge": pr.min_pixels, "longest_edge": pr.max_pixels}
        # Fast tokenizers are not safe to call from several threads at once.
        with self._processor_lock:
            texts = [
                self.processor.apply_chat_template(
                    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}],
                    add_generation_prompt=True,
                    tokenize=False,
                )
                for p in prompts
            ]
            inputs = self.processor(
                text=texts,
                images=images,
                padding=True,
                padding_side="left",
                return_tensors="pt",
                **extra,
            ).to(self.device)
        grids = inputs.get("image_grid_thw")
        resized: list[tuple[int, int] | None] = [None] * len(images)
        if grids is not None and self.prompter.patch:
            p = self.prompter.patch
            resized = [(int(g[2]) * p, int(g[1]) * p) for g in grids.tolist()]
        with torch.inference_mode():
            out = self.model.generate(**inputs, **gen_kwargs)
        with self._processor_lock:
            decoded = self.processor.batch_decode(
                out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
            )
        return [str(t) for t in decoded], resized

    def _run(
        self, queries: Sequence[Query], sample: bool, n: int
    ) -> tuple[list[list[str]], list[dict[str, Any]]]:
        """Generate ``n`` answers per query: (texts per query, per-query context)."""
        check_range("num_return_sequences", n, 1)
        cfg = self.config
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": cfg.max_new_tokens,
            "do_sample": bool(sample),
            "num_return_sequences": int(n),
        }
        if sample:
            gen_kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p)
        pad_id = getattr(getattr(self.processor, "tokenizer", None), "pad_token_id", None)
        if pad_id is not None:
            gen_kwargs["pad_token_id"] = pad_id
        outputs: list[list[str]] = [[] for _ in queries]
        contexts: list[dict[str, Any]] = []
        todo: list[tuple[int, Image.Image, str]] = []
        for i, query in enumerate(queries):
            image = load_image(query.image, self.image_options)
            reason = self.prompter.skip_reason(image.size, cfg.max_aspect_ratio)
            contexts.append({"size": image.size, "skip": reason, "resized": None})
            if reason is None:
                todo.append((i, image, self.build_prompt(query.question, image.size)))
            else:
                logger.info(
                    "VLMCropper: FULL for query %r without generation: %s", query.id, reason
                )
        for start in range(0, len(todo), cfg.batch_size):
            chunk = todo[start : start + cfg.batch_size]
            texts, resized = self._generate_chunk(
                [c[1] for c in chunk], [c[2] for c in chunk], gen_kwargs
            )
            for j, (i, image, _) in enumerate(chunk):
                outputs[i] = texts[j * n : (j + 1) * n]
                contexts[i]["resized"] = resized[j]
                predicted = self.coordinate_frame_for(image.size)[1]
                if predicted and resized[j] and predicted != resized[j]:
                    logger.warning(
                        "VLMCropper: processor resized %s to %s, smart_resize predicted %s; "
                        "using the processor's size",
                        image.size,
                        resized[j],
                        predicted,
                    )
        return outputs, contexts

    def _decide(self, text: str | None, ctx: dict[str, Any]) -> CropDecision:
        if text is None:
            return CropDecision.full(image_size=ctx["size"], source=self.name, reason=ctx["skip"])
        return decision_from_output(
            text,
            ctx["size"],
            self.frame,
            resized_size=ctx["resized"] or self.coordinate_frame_for(ctx["size"])[1],
            min_size=self.config.min_box_size,
            pad=self.config.pad,
            min_crop_size=self.config.min_crop_size,
            source=self.name,
        )

    def decide_batch(self, queries: Sequence[Query]) -> list[CropDecision]:
        """One decision per query, in order (greedy unless ``config.do_sample``).

        Queries whose image is too elongated (``config.max_aspect_ratio``) or smaller than one
        ``patch_size * merge_size`` cell get FULL with a ``reason`` and no generation.

        Raises:
            ImageLoadError: A query image cannot be decoded.
        """
        outputs, contexts = self._run(queries, self.config.do_sample, 1)
        return [self._decide(t[0] if t else None, c) for t, c in zip(outputs, contexts)]

    def generate_raw(
        self, queries: Sequence[Query], *, sample: bool | None = None, num_return_sequences: int = 1
    ) -> list[list[str]]:
        """The generated texts per query (for training code and debugging).

        Args:
            queries: The queries.
            sample: Sample (``True``) or decode greedily (``False``); ``None`` follows
                ``config.do_sample``. Sampling uses ``config.temperature`` and ``top_p``.
            num_return_sequences: Completions per query.

        Returns:
            One list of ``num_return_sequences`` texts per query, in order; an empty list
            for a query whose image was skipped (see :meth:`decide_batch`).
        """
        use_sample = self.config.do_sample if sample is None else sample
        return self._run(queries, use_sample, num_return_sequences)[0]

    def sample_decisions(
        self, queries: Sequence[Query], *, num_return_sequences: int = 4, sample: bool = True
    ) -> list[list[CropDecision]]:
        """Several decisions per query (e.g. a GRPO group), sampled by default.

        Returns:
            One list of ``num_return_sequences`` decisions per query; a skipped query gets
            that many FULL decisions carrying the skip ``reason``.
        """
        outputs, contexts = self._run(queries, sample, num_return_sequences)
        skipped = [None] * num_return_sequences
        return [
            [self._decide(t, c) for t in (texts or skipped)] for texts, c in zip(outputs, contexts)
        ]

    def __repr__(self) -> str:
        return (
            f"VLMCropper(model={self.model_name!r}, family={self.model_type!r}, "
            f"frame={self.frame.value!r}, adapter={self.adapter!r})"
        )

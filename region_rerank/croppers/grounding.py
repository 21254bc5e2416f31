"""Training-free cropping with an open-vocabulary detector (OWL-ViT, OWLv2, Grounding DINO).

The question is turned into short noun phrases (:func:`phrases_from_question`, or a
``query_fn`` of yours), the detector looks for them in the query image, and the highest
scoring box above the threshold becomes the crop. No detection, a tiny box or a box that
covers about the whole image means FULL.

Coordinate frames (read from the transformers 5 processors and models):

* **OWL-ViT** squashes the image to a square; ``pred_boxes`` are ``(cx, cy, w, h)`` relative
  to the *original* image, so pixels = relative x width, relative y height.
* **OWLv2** first pads the image at the bottom and right to a square of side
  ``S = max(width, height)``, then resizes; ``pred_boxes`` are relative to that *padded
  square*, so pixels = relative x ``S`` on both axes. In transformers 5,
  ``post_process_object_detection(target_sizes=[(height, width)])`` applies exactly this
  (it scales by ``max(height, width)``), but this convention has changed across releases,
  so the cropper asks for relative boxes (``target_sizes=None``) and scales them itself.
  Boxes reaching into the padding are clamped to the image (dropped when entirely in it).
* **Grounding DINO** (and MM-Grounding-DINO) boxes are relative to the original image,
  whatever batch padding the processor adds. That padding does change the backbone
  features, though, so that a decision never depends on which other queries share its
  batch, Grounding DINO batches only same-size images together. OWL models bring every
  image to the same square on its own, so any images batch together.

Example:
    >>> cropper = GroundingCropper("google/owlv2-base-patch16-ensemble")  # doctest: +SKIP
    >>> query = Query(image="photo.jpg", question="When was this bridge built?")
    >>> cropper.decide(query).box  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from region_rerank._optional import require
from region_rerank._pickling import PicklesWithoutLocks
from region_rerank._validate import check_choice, check_int, check_range
from region_rerank.boxes import ensure_min_size, pad_box, sanitize_box
from region_rerank.croppers.base import BaseCropper
from region_rerank.croppers.question_phrases import (
    clean_phrases,
    detector_texts,
    phrases_from_question,
)
from region_rerank.device import from_pretrained, resolve_device_dtype
from region_rerank.errors import ConfigError, CropperError, ModelLoadError, UnsafeWeightsError
from region_rerank.images import ImageLoadOptions, load_image
from region_rerank.model_options import ModelOptions, model_options_or_default
from region_rerank.types import CropDecision, Query

__all__ = ["GroundingCropperConfig", "GroundingCropper", "DEFAULT_MODEL", "MODEL_FAMILIES"]

logger = logging.getLogger(__name__)

#: The default detector (hub id).
DEFAULT_MODEL = "google/owlv2-base-patch16-ensemble"
#: transformers ``config.model_type`` -> detector family handled by this module.
MODEL_FAMILIES: dict[str, str] = {
    "owlvit": "owlvit",
    "owlv2": "owlv2",
    "grounding-dino": "grounding-dino",
    "mm-grounding-dino": "grounding-dino",
}
_DEFAULT_THRESHOLD = {"owlvit": 0.1, "owlv2": 0.2, "grounding-dino": 0.35}
_OWL_TEMPLATE = "a photo of a {}"
_DEFAULT_TEMPLATE = {"owlvit": _OWL_TEMPLATE, "owlv2": _OWL_TEMPLATE, "grounding-dino": "{}"}
_SUMMARY_TOP = 3


@dataclass(frozen=True)
class GroundingCropperConfig:
    """Settings of :class:`GroundingCropper`.

    Attributes:
        model_type: ``"auto"`` (read ``config.model_type`` of the model) or one of
            ``"owlvit"``, ``"owlv2"``, ``"grounding-dino"``.
        score_threshold: Keep detections with a score strictly above this, in [0, 1].
            ``None`` picks the family default: 0.1 (OWL-ViT), 0.2 (OWLv2), 0.35 (Grounding
            DINO, its authors' box threshold). A value of 1.0 is never reached.
        text_threshold: Grounding DINO only: token threshold for the detection's label.
        query_template: Wraps each phrase (must contain ``{}``). ``None`` picks
            ``"a photo of a {}"`` for OWL models (their training prompts) and ``"{}"`` for
            Grounding DINO.
        max_phrases: At most this many phrases are searched for per question (1..16).
        min_area_fraction: Detections smaller than this share of the image are ignored.
        max_area_fraction: If the best detection covers more than this share of the
            image, the entity fills the frame and the decision is FULL.
        padding: The chosen box grows by this fraction of its width / height on every side
            (:func:`region_rerank.boxes.pad_box`), clamped to the image.
        min_crop_size: Then it grows around its centre to at least this many pixels per
            side, capped by the image (:func:`region_rerank.boxes.ensure_min_size`).
        batch_size: Images per detector forward pass.
        max_side: Work bound: an image whose longer side exceeds this is downscaled
            (aspect kept) before the detector sees it; boxes are mapped back to the original
            pixels. The processors resize to at most 1333 px anyway (OWLv2 after padding to
            a square of the longer side, which is what made a 1 x 10000 image cost GBs).
        max_aspect: Images more elongated than this (longer / shorter side) are not sent
            to the detector: the decision is FULL with the reason given. Detectors resize
            such images to a sliver in which nothing can be found.
    """

    model_type: str = "auto"
    score_threshold: float | None = None
    text_threshold: float = 0.25
    query_template: str | None = None
    max_phrases: int = 3
    min_area_fraction: float = 0.0025
    max_area_fraction: float = 0.9
    padding: float = 0.1
    min_crop_size: int = 32
    batch_size: int = 8
    max_side: int = 1333
    max_aspect: float = 20.0

    def __post_init__(self) -> None:
        check_choice("model_type", self.model_type, ["auto", "owlvit", "owlv2", "grounding-dino"])
        if self.score_threshold is not None:
            check_range("score_threshold", self.score_threshold, 0.0, 1.0)
        check_range("text_threshold", self.text_threshold, 0.0, 1.0)
        if self.query_template is not None:
            t = self.query_template
            rest = t.replace("{}", "") if isinstance(t, str) else "{"
            if not isinstance(t, str) or t.count("{}") != 1 or "{" in rest or "}" in rest:
                raise ConfigError(
                    f"query_template={t!r} must be a str with exactly one '{{}}' placeholder "
                    "and no other braces, e.g. 'a photo of a {}'"
                )
        check_int("max_phrases", self.max_phrases, 1, 16)
        check_range("min_area_fraction", self.min_area_fraction, 0.0, 1.0, high_inclusive=False)
        check_range("max_area_fraction", self.max_area_fraction, 0.0, 1.0, low_inclusive=False)
        if self.min_area_fraction >= self.max_area_fraction:
            raise ConfigError(
                f"min_area_fraction={self.min_area_fraction!r} must be below "
                f"max_area_fraction={self.max_area_fraction!r}"
            )
        check_range("padding", self.padding, 0.0, 2.0)
        check_int("min_crop_size", self.min_crop_size, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("max_side", self.max_side, 32)
        check_range("max_aspect", self.max_aspect, 1.0)

    def threshold_for(self, family: str) -> float:
        """The score threshold used for ``family``."""
        if self.score_threshold is not None:
            return float(self.score_threshold)
        return _DEFAULT_THRESHOLD[family]

    def template_for(self, family: str) -> str:
        """The query template used for ``family``."""
        return self.query_template if self.query_template is not None else _DEFAULT_TEMPLATE[family]


class _Detection(NamedTuple):
    coords: tuple[float, float, float, float]  # original-image pixels, not yet clamped
    score: float
    label: str


class GroundingCropper(PicklesWithoutLocks, BaseCropper):
    """Crop to the best open-vocabulary detection of the question's subject.

    Args:
        model: Hub id or local folder of an OWL-ViT, OWLv2 or Grounding DINO checkpoint,
            loaded with ``AutoProcessor`` / ``AutoModelForZeroShotObjectDetection`` on
            first use (or by :meth:`load`). Ignored for the parts you inject.
        model_options: Device, dtype (``"auto"``: float16 on GPU, float32 on CPU), pickled
            weights and remote code (:class:`~region_rerank.model_options.ModelOptions`);
            only for the parts this cropper loads (an injected ``model_obj`` stays as is).
        config: :class:`GroundingCropperConfig`; defaults when ``None``.
        query_fn: ``question -> phrases``; defaults to :func:`phrases_from_question`
            with ``config.max_phrases``. Its phrases go through :func:`clean_phrases`;
            when none is usable the default heuristic is used instead.
        model_obj: An already loaded detector (used as is: not moved, cast or put in eval
            mode).
        processor: An already loaded processor.
        image_options: How query images are decoded (:class:`ImageLoadOptions`).

    Raises:
        CropperError: (on load) unknown model family or a model that cannot be loaded.
    """

    name = "grounding"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        model_options: ModelOptions | None = None,
        config: GroundingCropperConfig | None = None,
        query_fn: Callable[[str], list[str]] | None = None,
        model_obj: Any = None,
        processor: Any = None,
        image_options: ImageLoadOptions | None = None,
    ) -> None:
        self.model_name = str(model)
        self.config = config or GroundingCropperConfig()
        self.model_options = model_options_or_default(model_options)
        self.model_options.warn_if_remote_code("GroundingCropper", self.model_name)
        self.query_fn = query_fn
        self.image_options = image_options
        self._model = model_obj
        self._processor = processor
        self._family: str | None = None
        self._device: Any = None
        self._dtype: Any = None
        # Guards the one-time load, and the processor: its fast (Rust) tokenizer must not be
        # reconfigured by one thread while another encodes.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"GroundingCropper(model={self.model_name!r}, family={self._family!r})"

    @property
    def family(self) -> str:
        """Detector family (``owlvit``, ``owlv2`` or ``grounding-dino``); loads the model."""
        self.load()
        assert self._family is not None
        return self._family

    def load(self) -> GroundingCropper:
        """Load the processor and model now (otherwise done on first use, once even when
        several threads ask at once). Returns self."""
        if self._family is None:
            with self._lock:
                if self._family is None:
                    self._load_now()
        return self

    def _load_now(self) -> None:
        transformers = require("transformers", feature="GroundingCropper")
        try:
            opts = self.model_options
            if self._processor is None:
                self._processor = transformers.AutoProcessor.from_pretrained(
                    self.model_name, trust_remote_code=opts.trust_remote_code
                )
            if self._model is None:
                device, dtype = resolve_device_dtype(opts.device, opts.dtype)
                model = from_pretrained(
                    transformers.AutoModelForZeroShotObjectDetection,
                    self.model_name,
                    dtype=dtype,
                    allow_pickle=opts.allow_pickle,
                    trust_remote_code=opts.trust_remote_code,
                )
                self._model = model.to(device).eval()
        except UnsafeWeightsError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(
                f"GroundingCropper could not load detector {self.model_name!r}: {exc}"
            ) from exc
        param = next(iter(self._model.parameters()))
        self._device, self._dtype = param.device, param.dtype
        if getattr(self._model, "training", False):
            logger.warning("GroundingCropper: the detector is in training mode; call .eval()")
        model_type = str(getattr(getattr(self._model, "config", None), "model_type", None))
        family = self.config.model_type
        if family == "auto":
            if model_type not in MODEL_FAMILIES:
                raise CropperError(
                    f"GroundingCropper does not support model_type={model_type!r} "
                    f"({self.model_name!r}); supported: {sorted(MODEL_FAMILIES)}"
                )
            family = MODEL_FAMILIES[model_type]
        self._family = family
        logger.info("GroundingCropper loaded %s (%s) on %s", self.model_name, family, self._device)

    def phrases_for(self, question: str) -> list[str]:
        """The detector phrases for ``question`` (``query_fn`` or the default heuristic).

        Raises:
            CropperError: When ``query_fn`` raises.
        """
        limit = self.config.max_phrases
        if self.query_fn is None:
            return phrases_from_question(question, limit)
        try:
            raw = self.query_fn(question)
        except Exception as exc:
            raise CropperError(f"query_fn failed on question {question[:80]!r}: {exc}") from exc
        phrases = clean_phrases(raw, limit)
        if not phrases:
            logger.warning("query_fn returned no usable phrase (%.200r); using the default", raw)
            return phrases_from_question(question, limit)
        return phrases

    def _bounded(self, image: Any) -> Any:
        """``image`` downscaled (aspect kept) so that its longer side is at most
        ``config.max_side``; the same object when it already is."""
        from PIL import Image

        w, h = image.size
        scale = self.config.max_side / max(w, h)
        if scale >= 1.0:
            return image
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return image.resize(size, Image.Resampling.BILINEAR)

    def _detect(
        self,
        images: list[Any],
        phrase_lists: list[list[str]],
        sizes: list[tuple[int, int]] | None = None,
    ) -> list[list[_Detection]]:
        """Run the detector on ``images``; detections above the threshold, in pixels of
        ``sizes`` (the original image sizes; default: the images' own)."""
        import torch

        family = self._family
        assert family is not None and self._processor is not None
        threshold = self.config.threshold_for(family)
        texts = detector_texts(phrase_lists, family, self.config.template_for(family))
        kwargs: dict[str, Any] = {"return_tensors": "pt", "truncation": True}
        if family == "grounding-dino":
            # The model fails on more than config.max_text_len tokens: truncate to it.
            kwargs["padding"] = True
            kwargs["max_length"] = int(getattr(self._model.config, "max_text_len", 256))
        with self._lock:
            inputs = self._processor(images=images, text=texts, **kwargs)
        moved = {k: v.to(self._device) if hasattr(v, "to") else v for k, v in inputs.items()}
        moved["pixel_values"] = moved["pixel_values"].to(self._dtype)
        with torch.inference_mode():
            outputs = self._model(**moved)
        outputs.logits = outputs.logits.float()
        outputs.pred_boxes = outputs.pred_boxes.float()
        if family == "grounding-dino":
            results = self._processor.post_process_grounded_object_detection(
                outputs,
                input_ids=moved["input_ids"],
                threshold=threshold,
                text_threshold=self.config.text_threshold,
                target_sizes=None,
            )
        else:
            results = self._processor.image_processor.post_process_object_detection(
                outputs, threshold=threshold, target_sizes=None
            )
        sizes = sizes or [image.size for image in images]
        return [
            self._to_pixels(size, phrases, result)
            for size, phrases, result in zip(sizes, phrase_lists, results)
        ]

    def _to_pixels(
        self, size: tuple[int, int], phrases: list[str], result: Any
    ) -> list[_Detection]:
        """One image's post-processed result -> detections in pixels, best first."""
        width, height = size
        if self._family == "owlv2":  # relative to the padded square, see the module docstring
            sx = sy = float(max(width, height))
        else:
            sx, sy = float(width), float(height)
        if self._family == "grounding-dino":
            specials = set(getattr(self._processor.tokenizer, "all_special_tokens", []))
            labels = [
                " ".join(w for w in str(t).split() if w not in specials)
                for t in result["text_labels"]
            ]
        else:  # label i is phrase i % len(phrases), see detector_texts
            labels = [phrases[int(i) % len(phrases)] for i in result["labels"].tolist()]
        dets = [
            _Detection((b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy), float(s), label)
            for b, s, label in zip(
                result["boxes"].detach().cpu().tolist(),
                result["scores"].detach().cpu().tolist(),
                labels,
            )
        ]
        return sorted(dets, key=lambda d: -d.score)

    def _summary(self, phrases: list[str], dets: list[_Detection]) -> str:
        top = ", ".join(
            "{!r} {:.3f} ({:.0f},{:.0f},{:.0f},{:.0f})".format(d.label, d.score, *d.coords)
            for d in dets[:_SUMMARY_TOP]
        )
        return f"phrases={phrases!r}; detections={len(dets)}; top=[{top}]"

    def _decide_one(
        self, size: tuple[int, int], phrases: list[str], dets: list[_Detection]
    ) -> CropDecision:
        """Best detection (``dets`` is sorted best first) -> the decision for one image."""
        cfg = self.config
        assert self._family is not None
        common: dict[str, Any] = {
            "image_size": size,
            "source": self.name,
            "raw_output": self._summary(phrases, dets),
        }
        area = float(size[0] * size[1])
        inside = ((d, sanitize_box(d.coords, size)) for d in dets)
        best = next(
            ((d, b) for d, b in inside if b is not None and b.area / area >= cfg.min_area_fraction),
            None,
        )
        if best is None:
            threshold = cfg.threshold_for(self._family)
            reason = (
                f"no detection above score_threshold={threshold} for {phrases!r}"
                if not dets
                else f"{len(dets)} detection(s) above the threshold, none inside the image "
                f"with area >= min_area_fraction={cfg.min_area_fraction}"
            )
            return CropDecision.full(reason=reason, **common)
        det, box = best
        if box.area / area > cfg.max_area_fraction:
            reason = (
                f"best detection covers {box.area / area:.0%} of the image "
                f"(> max_area_fraction={cfg.max_area_fraction})"
            )
            return CropDecision.full(confidence=det.score, reason=reason, **common)
        box = ensure_min_size(pad_box(box, size, cfg.padding), size, cfg.min_crop_size)
        return CropDecision.region(box, confidence=det.score, **common)

    def _groups(self, images: list[Any]) -> list[list[int]]:
        """Indices of the images sharing a forward pass (Grounding DINO: same size only)."""
        if self._family != "grounding-dino":
            return [list(range(len(images)))]
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(tuple(image.size), []).append(i)
        return list(by_size.values())

    def decide_batch(self, queries: Sequence[Query]) -> list[CropDecision]:
        """Decide for several queries, running the detector on up to ``config.batch_size``
        images at a time (Grounding DINO: same-size images only, see the module docstring).

        Raises:
            ImageLoadError: A query image cannot be decoded.
            CropperError: The model cannot be loaded or ``query_fn`` failed.
        """
        queries = list(queries)
        if not queries:
            return []
        self.load()
        decisions: list[CropDecision] = []
        step = self.config.batch_size
        for start in range(0, len(queries), step):
            chunk = queries[start : start + step]
            t0 = time.perf_counter()
            images = [load_image(q.image, self.image_options) for q in chunk]
            phrase_lists = [self.phrases_for(q.question) for q in chunk]
            all_dets: list[list[_Detection]] = [[] for _ in chunk]
            limit = self.config.max_aspect
            usable = [i for i, im in enumerate(images) if max(im.size) / min(im.size) <= limit]
            inputs = {i: self._bounded(images[i]) for i in usable}
            for group in self._groups([inputs[i] for i in usable]) if usable else []:
                idx = [usable[g] for g in group]
                found = self._detect(
                    [inputs[i] for i in idx],
                    [phrase_lists[i] for i in idx],
                    [images[i].size for i in idx],
                )
                for i, dets in zip(idx, found):
                    all_dets[i] = dets
            for i, (image, phrases, dets) in enumerate(zip(images, phrase_lists, all_dets)):
                if i in inputs:
                    decisions.append(self._decide_one(image.size, phrases, dets))
                else:
                    w, h = image.size
                    reason = (
                        f"the {w}x{h} image is more elongated than max_aspect={limit}; "
                        "the detector is not run"
                    )
                    decisions.append(
                        CropDecision.full(image_size=image.size, source=self.name, reason=reason)
                    )
            logger.debug(
                "GroundingCropper: %d image(s) in %.3f s", len(chunk), time.perf_counter() - t0
            )
        return decisions

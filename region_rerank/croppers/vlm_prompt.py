"""What a Qwen-VL crop policy is asked, and in which coordinate frame it answers.

:class:`VLMPrompter` needs only the processor and the model family (no weights), so the
cropper at inference and the r-GRPO trainer build exactly the same instruction and convert
boxes with exactly the same model-input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from region_rerank.boxes import CoordFrame, qwen_smart_resize
from region_rerank.croppers.vlm_output import format_prompt
from region_rerank.errors import ConfigError
from region_rerank.images import load_image

__all__ = ["FAMILY_FRAMES", "VLMPrompter", "resolve_frame"]

#: ``config.model_type`` -> the frame that family writes boxes in.
FAMILY_FRAMES: dict[str, CoordFrame] = {
    "qwen2_5_vl": CoordFrame.QWEN25_RESIZED,
    "qwen2_vl": CoordFrame.NORM_1000,
    "qwen3_vl": CoordFrame.NORM_1000,
    "qwen3_vl_moe": CoordFrame.NORM_1000,  # the MoE variant shares Qwen3-VL's format
}


def resolve_frame(coord_frame: CoordFrame | str, model_type: str | None) -> CoordFrame:
    """``coord_frame`` itself, or the family's frame when it is ``"auto"``.

    Raises:
        ConfigError: ``"auto"`` with a model family not in :data:`FAMILY_FRAMES`.
    """
    if coord_frame != "auto":
        return CoordFrame(coord_frame)
    frame = FAMILY_FRAMES.get(model_type or "")
    if frame is None:
        raise ConfigError(
            f"cannot tell the box coordinate frame of model_type={model_type!r}; known "
            f"families are {sorted(FAMILY_FRAMES)}. Set VLMCropperConfig(coord_frame=...) "
            f"to one of {[f.value for f in CoordFrame]}"
        )
    return frame


@dataclass(frozen=True)
class VLMPrompter:
    """Prompt text, coordinate frame and model-input size for one processor + family.

    Attributes:
        frame: The frame the policy writes boxes in.
        patch: The vision patch size (``None`` for non-Qwen processors).
        factor: ``patch_size * merge_size`` (``None`` for non-Qwen processors).
        min_pixels, max_pixels: The pixel floor / ceiling of the processor's resize.
        template: Instruction template (``None``: the default prompt).
        max_question_chars: Longer questions are cut to this many characters.
    """

    frame: CoordFrame
    patch: int | None
    factor: int | None
    min_pixels: int
    max_pixels: int
    template: str | None = None
    max_question_chars: int = 2000

    @classmethod
    def from_processor(
        cls,
        processor: Any,
        model_type: str | None,
        *,
        coord_frame: CoordFrame | str = "auto",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        template: str | None = None,
        max_question_chars: int = 2000,
    ) -> VLMPrompter:
        """Read the patch / merge sizes and pixel budget from a Qwen-VL processor.

        Raises:
            ConfigError: Unknown family with ``coord_frame="auto"``, or the resized-pixel
                frame with a processor that has no ``patch_size`` / ``merge_size``.
        """
        frame = resolve_frame(coord_frame, model_type)
        image_processor = getattr(processor, "image_processor", None)
        patch, merge = (getattr(image_processor, k, None) for k in ("patch_size", "merge_size"))
        factor = patch * merge if isinstance(patch, int) and isinstance(merge, int) else None
        if frame is CoordFrame.QWEN25_RESIZED and factor is None:
            raise ConfigError(
                "coord_frame qwen25_resized needs a Qwen-VL image processor with patch_size "
                f"and merge_size; got {type(image_processor).__name__}"
            )
        size = getattr(image_processor, "size", None)
        get = getattr(size, "get", lambda key: None)
        return cls(
            frame=frame,
            patch=patch if isinstance(patch, int) else None,
            factor=factor,
            min_pixels=int(min_pixels or get("shortest_edge") or 56 * 56),
            max_pixels=int(max_pixels or get("longest_edge") or 28 * 28 * 1280),
            template=template,
            max_question_chars=max_question_chars,
        )

    def coordinate_frame_for(self, image: Any) -> tuple[CoordFrame, tuple[int, int] | None]:
        """The frame boxes are written in for ``image``, and the model-input size.

        Args:
            image: Anything :func:`load_image` accepts, or a ``(width, height)`` tuple.

        Returns:
            ``(frame, resized_size)``. For :attr:`CoordFrame.QWEN25_RESIZED`,
            ``resized_size`` is the ``(width, height)`` the processor resizes the image to
            (smart resize with the pixel budget and ``patch_size * merge_size``; it equals
            ``image_grid_thw * patch_size``); otherwise ``None``.
        """
        if isinstance(image, tuple) and len(image) == 2:
            width, height = int(image[0]), int(image[1])
        else:
            width, height = load_image(image).size
        if self.frame is not CoordFrame.QWEN25_RESIZED or self.factor is None:
            return self.frame, None
        rh, rw = qwen_smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        return self.frame, (rw, rh)

    def build_prompt(self, question: str, image_size: tuple[int, int]) -> str:
        """The instruction for one query (before the chat template is applied)."""
        frame, resized = self.coordinate_frame_for(image_size)
        question = str(question)[: self.max_question_chars].strip()
        return format_prompt(question, frame, resized or image_size, self.template)

    def skip_reason(self, size: tuple[int, int], max_aspect_ratio: float) -> str | None:
        """Why an image of ``size`` gets FULL without generation, or ``None``: too
        elongated (the Qwen-VL processors refuse ratios over 200) or smaller than one
        ``patch_size * merge_size`` cell."""
        ratio = max(size) / max(1, min(size))
        if ratio > max_aspect_ratio:
            return f"aspect ratio {ratio:.1f} exceeds {max_aspect_ratio:g}"
        if min(size) < (self.factor or 1):
            return f"image {size[0]}x{size[1]} is too small for the processor (< {self.factor} px)"
        return None

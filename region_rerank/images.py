"""Load any image input safely, and crop/resize on the device.

:func:`load_image` accepts PIL images, paths, bytes, base64 strings, data URIs, numpy
arrays (``HxW``, ``HxWxC``) and torch tensors (``CxHxW``), applies the EXIF orientation,
converts every mode to RGB, refuses images over a pixel budget, and never fetches an
http(s) URL unless asked to. :func:`crop_resize` crops one or many boxes out of a decoded
``uint8`` tensor and resizes them in one go, without a PIL round trip.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.errors import ImageLoadError, ImageTooLargeError, URLFetchDisabledError
from region_rerank.types import Box

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "ImageLoadOptions",
    "DEFAULT_MAX_PIXELS",
    "load_image",
    "to_rgb",
    "pil_to_tensor",
    "crop_resize",
    "crop_pil",
]

logger = logging.getLogger(__name__)

#: Default pixel budget (about 8000 x 5000): larger images are refused.
DEFAULT_MAX_PIXELS = 40_000_000
_DATA_URI = re.compile(r"^data:image/[\w.+-]+;base64,", re.IGNORECASE)
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}
_B64_CHARS = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")


@dataclass(frozen=True)
class ImageLoadOptions:
    """How untrusted image inputs are decoded.

    Attributes:
        max_pixels: Refuse images with more pixels than this (decompression bombs).
        allow_urls: Fetch http(s) URLs. Off by default: no network unless asked.
        url_timeout: Seconds before a URL fetch gives up.
        max_url_bytes: Refuse URL bodies larger than this many bytes.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    allow_urls: bool = False
    url_timeout: float = 10.0
    max_url_bytes: int = 50 * 1024 * 1024

    def __post_init__(self) -> None:
        check_range("max_pixels", self.max_pixels, 1)
        check_range("url_timeout", self.url_timeout, 0, low_inclusive=False)
        check_range("max_url_bytes", self.max_url_bytes, 1)


def _describe(image: Any) -> str:
    if isinstance(image, (str, bytes)) and len(image) > 60:
        return f"{type(image).__name__} of length {len(image)}"
    return repr(image) if isinstance(image, (str, Path)) else type(image).__name__


def _open_bytes(data: bytes, what: str) -> Image.Image:
    from PIL import Image

    if not data:
        raise ImageLoadError(f"cannot load image from {what}: it is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image from {what} is too large: {exc}") from exc
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, ...)
        raise ImageLoadError(f"cannot decode image from {what}: {exc}") from exc


def _fetch_url(url: str, options: ImageLoadOptions) -> bytes:
    if not options.allow_urls:
        raise URLFetchDisabledError(
            f"refusing to fetch {url!r}: URL fetching is disabled "
            "(pass ImageLoadOptions(allow_urls=True) to enable it)"
        )
    import urllib.request

    logger.debug("fetching image %s", url)
    try:
        with urllib.request.urlopen(url, timeout=options.url_timeout) as resp:
            data: bytes = resp.read(options.max_url_bytes + 1)
    except Exception as exc:
        raise ImageLoadError(f"cannot fetch image {url!r}: {exc}") from exc
    if len(data) > options.max_url_bytes:
        raise ImageTooLargeError(f"image at {url!r} exceeds {options.max_url_bytes} bytes")
    return data


def _from_string(text: str, options: ImageLoadOptions) -> Image.Image:
    stripped = text.strip()
    lowered = stripped[:8].lower()
    if lowered.startswith(("http://", "https://")):
        return _open_bytes(_fetch_url(stripped, options), repr(stripped))
    if _DATA_URI.match(stripped):
        payload = stripped.split(",", 1)[1]
        return _open_bytes(_b64decode(payload, "data URI"), "data URI")
    if stripped.startswith("file://"):
        stripped = stripped[len("file://") :]
    is_path = len(stripped) < 4096 and "\n" not in stripped
    if is_path and os.path.exists(os.path.expanduser(stripped)):
        return _from_path(Path(stripped).expanduser())
    if len(stripped) >= 64 and _B64_CHARS.match(stripped[:4096]):
        return _open_bytes(_b64decode(stripped, "base64 string"), "base64 string")
    looks_like_path = is_path and (
        stripped.startswith(("/", "./", "../", "~"))
        or Path(stripped).suffix.lower() in _IMAGE_SUFFIXES
    )
    if looks_like_path:
        raise ImageLoadError(f"image file not found: {stripped!r}")
    raise ImageLoadError(
        f"cannot load image from {_describe(text)}: not an existing file, a data URI, "
        "base64 data or an http(s) URL"
    )


def _b64decode(payload: str, what: str) -> bytes:
    try:
        cleaned = "".join(payload.split())
        if "-" in cleaned or "_" in cleaned:
            return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageLoadError(f"cannot decode {what}: invalid base64 ({exc})") from exc


def _from_path(path: Path) -> Image.Image:
    if not path.exists():
        raise ImageLoadError(f"image file not found: {str(path)!r}")
    if not path.is_file():
        raise ImageLoadError(f"image path is not a file: {str(path)!r}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageLoadError(f"cannot read image file {str(path)!r}: {exc}") from exc
    return _open_bytes(data, repr(str(path)))


def _from_array(array: Any) -> Image.Image:
    import numpy as np
    from PIL import Image

    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageLoadError(
            f"cannot load image from an array of shape {arr.shape}: expected HxW, HxWx3 or HxWx4"
        )
    if arr.size == 0:
        raise ImageLoadError(f"cannot load image from an empty array of shape {arr.shape}")
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise ImageLoadError(
            f"cannot load image from an array of dtype {arr.dtype}: expected bool, integer "
            "or float pixel values"
        )
    if kind == "b":
        arr = arr.astype(np.uint8) * 255
    elif kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ImageLoadError("cannot load image from an array with NaN or inf values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 255.0:
            raise ImageLoadError(
                f"float pixel values must lie in [0, 1] or [0, 255], got [{lo:g}, {hi:g}] "
                "(normalised tensors must be un-normalised first)"
            )
        scale = 255.0 if hi <= 1.0 else 1.0
        arr = (arr.astype(np.float64) * scale).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:
            raise ImageLoadError(
                f"integer pixel values must lie in [0, 255] or [0, 65535], got [{lo}, {hi}]"
            )
        if arr.dtype == np.uint16 or hi > 255:
            arr = (arr.astype(np.uint32) * 255 // 65535).astype(np.uint8)
        else:
            arr = arr.astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr))


def _from_tensor(tensor: Any) -> Image.Image:
    t = tensor.detach().cpu()
    if t.ndim == 3 and t.shape[0] in (1, 3, 4) and t.shape[2] not in (3, 4):
        t = t.permute(1, 2, 0)
    elif t.ndim == 3 and t.shape[0] in (1, 3, 4):
        t = t.permute(1, 2, 0)  # ambiguous: torch convention is CxHxW
    return _from_array(t.float().numpy() if t.is_floating_point() else t.numpy())


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: 16-bit and float are rescaled, transparency is composited
    on white, CMYK / YCbCr / LAB / palette are converted. Returns a new image unless
    ``image`` is already RGB."""
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np

        arr = np.asarray(image, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or float(arr.max(initial=0)) > 255 else 255.0
        if mode == "F" and float(arr.max(initial=0)) <= 1.0:
            hi = 1.0
        arr8 = np.clip(arr * (255.0 / hi), 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _first_frame(image: Image.Image) -> Image.Image:
    """Frame 0 of a caller's (possibly animated) image, leaving its frame position as it was."""
    position = image.tell() if getattr(image, "n_frames", 1) > 1 else 0
    if position == 0:
        return image
    try:
        image.seek(0)
        return image.copy()
    except (OSError, ValueError, EOFError) as exc:
        raise ImageLoadError(f"cannot read the first frame of the image: {exc}") from exc
    finally:
        image.seek(position)


def load_image(image: Any, options: ImageLoadOptions | None = None) -> Image.Image:
    """Decode ``image`` into an RGB PIL image, safely.

    Args:
        image: PIL image, path (``str`` / ``Path`` / ``file://``), ``bytes``, base64 string,
            data URI, http(s) URL (only with ``options.allow_urls``), numpy array
            (``HxW`` / ``HxWxC``; bool, integers in [0, 255] or, for uint16 and larger
            values, [0, 65535], floats in [0, 1] or [0, 255]) or torch tensor (``CxHxW``).
            Values outside these ranges, and other dtypes (object, complex, strings,
            dates), raise :class:`ImageLoadError`: nothing is clipped silently.
        options: Budget and URL policy; defaults to :class:`ImageLoadOptions`.

    Returns:
        An RGB image with EXIF orientation applied. The caller's object is never modified.

    Raises:
        ImageLoadError: Missing file, corrupt or truncated data, unsupported input type.
        ImageTooLargeError: More pixels than ``options.max_pixels``.
        URLFetchDisabledError: An http(s) URL while URL fetching is off.
    """
    from PIL import Image, ImageOps

    opts = options or ImageLoadOptions()
    if isinstance(image, Image.Image):
        img = _first_frame(image)
    elif isinstance(image, Path):
        img = _from_path(image)
    elif isinstance(image, str):
        img = _from_string(image, opts)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        img = _open_bytes(bytes(image), f"{len(image)} bytes")
    elif type(image).__module__.startswith("torch"):
        img = _from_tensor(image)
    elif hasattr(image, "__array_interface__") or type(image).__module__.startswith("numpy"):
        img = _from_array(image)
    else:
        raise ImageLoadError(
            f"cannot load image from {type(image).__name__}: expected a PIL image, path, bytes, "
            "base64 / data URI, URL, numpy array or torch tensor"
        )
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"image has zero size ({width}x{height})")
    if width * height > opts.max_pixels:
        raise ImageTooLargeError(
            f"image of {width}x{height} = {width * height} pixels exceeds the budget of "
            f"{opts.max_pixels} pixels (raise ImageLoadOptions.max_pixels to accept it)"
        )
    try:
        transposed = ImageOps.exif_transpose(img)
        if transposed is not None:
            img = transposed
        img.load()
        return to_rgb(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"cannot decode image ({_describe(image)}): {exc}") from exc


def pil_to_tensor(image: Image.Image, device: Any = "cpu") -> torch.Tensor:
    """RGB PIL image -> ``uint8`` tensor ``3xHxW`` on ``device`` (one host->device copy)."""
    import numpy as np
    import torch

    arr = np.asarray(to_rgb(image), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous().to(device)


def _square_centre(box: Box) -> tuple[float, float, float, float]:
    side = min(box.width, box.height)
    cx, cy = (box.x1 + box.x2) / 2.0, (box.y1 + box.y2) / 2.0
    return (cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0)


#: Downscales by more than this factor on an axis first average whole blocks of pixels
#: (as PIL's ``reducing_gap``): the antialiased kernel's support grows with the factor, so a
#: 1 x 100000 strip would otherwise cost ~100x a square image of the same pixels.
REDUCING_GAP = 8


def _pre_reduce(patches: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Average ``k x k'`` blocks of ``patches`` (``N x 3 x H x W``) when resizing to ``size``
    shrinks an axis by more than :data:`REDUCING_GAP`, leaving at least twice ``size``."""
    import torch.nn.functional as F

    ph, pw = patches.shape[-2:]
    kh = max(1, ph // (2 * size[0])) if ph > REDUCING_GAP * size[0] else 1
    kw = max(1, pw // (2 * size[1])) if pw > REDUCING_GAP * size[1] else 1
    if kh == 1 and kw == 1:
        return patches
    if patches.dtype.is_floating_point:
        return F.avg_pool2d(patches, (kh, kw), ceil_mode=True)
    pooled = F.avg_pool2d(patches.float(), (kh, kw), ceil_mode=True)
    return pooled.round_().to(patches.dtype)


def crop_resize(
    image: torch.Tensor,
    boxes: list[Box | None],
    size: tuple[int, int],
    *,
    center_crop: bool = False,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    interpolation: str = "bicubic",
    dtype: Any = None,
    resize_uint8: bool = False,
) -> torch.Tensor:
    """Crop each box (``None`` = the whole image) from a ``3xHxW`` tensor and resize.

    Args:
        image: ``uint8`` or float tensor ``3xHxW`` (uint8 is scaled to [0, 1]).
        boxes: Boxes in pixels of ``image``; ``None`` selects the whole image.
        size: Output ``(height, width)``.
        center_crop: Emulate "resize shortest side, then centre crop" (CLIP processors)
            by taking the centred square of each box first; otherwise squash (SigLIP).
        mean, std: Per-channel normalisation applied after resizing.
        interpolation: ``"bicubic"`` or ``"bilinear"`` (antialiased).
        dtype: Output dtype (default float32).
        resize_uint8: With a ``uint8`` image on the CPU, resize in ``uint8`` (channels-last)
            as the torchvision-backed image processors do: several times faster, values
            rounded to 1/255 before scaling. Otherwise (or on another device) resize in
            float32, exactly as torchvision's ``resized_crop`` on float input, except that
            a downscale by more than :data:`REDUCING_GAP` on an axis first averages blocks
            of pixels (bounded work for any aspect ratio; values within ~1/255 of the direct
            resize).

    Returns:
        ``N x 3 x size[0] x size[1]`` tensor on ``image.device``.
    """
    import torch
    import torch.nn.functional as F

    if image.ndim != 3 or image.shape[0] != 3:
        raise ImageLoadError(f"expected a 3xHxW image tensor, got shape {tuple(image.shape)}")
    _, h, w = image.shape
    in_uint8 = resize_uint8 and image.dtype == torch.uint8 and image.device.type == "cpu"
    if in_uint8:
        x = image
    else:
        x = image.float().div_(255.0) if image.dtype == torch.uint8 else image.float()
    # Patches of the same size (e.g. one scale of a proposal grid) are resized in one call.
    groups: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for i, box in enumerate(boxes):
        region = box or Box(0.0, 0.0, float(w), float(h))
        coords = _square_centre(region) if center_crop else region.as_tuple()
        left = min(max(round(coords[0]), 0), w - 1)
        top = min(max(round(coords[1]), 0), h - 1)
        right = min(max(round(coords[2]), left + 1), w)
        bottom = min(max(round(coords[3]), top + 1), h)
        groups.setdefault((bottom - top, right - left), []).append((i, top, left))
    out_dtype = torch.uint8 if in_uint8 else torch.float32
    batch = torch.empty(len(boxes), 3, *size, dtype=out_dtype, device=image.device)
    for (ph, pw), members in groups.items():
        patches = _pre_reduce(
            torch.stack([x[:, t : t + ph, lf : lf + pw] for _, t, lf in members]), size
        )
        if in_uint8:
            patches = patches.contiguous(memory_format=torch.channels_last)
        index = torch.tensor([i for i, _, _ in members], device=image.device)
        batch[index] = F.interpolate(
            patches, size=size, mode=interpolation, antialias=True, align_corners=False
        ).to(out_dtype)
    batch = batch.float().div_(255.0) if in_uint8 else batch.clamp_(0.0, 1.0)
    if mean is not None and std is not None:
        m = torch.tensor(mean, device=batch.device).view(1, -1, 1, 1)
        s = torch.tensor(std, device=batch.device).view(1, -1, 1, 1)
        batch = batch.sub_(m).div_(s)
    return batch.to(dtype) if dtype is not None else batch


def crop_pil(image: Image.Image, box: Box | None) -> Image.Image:
    """Crop ``box`` out of a PIL image (``None`` returns the image itself)."""
    if box is None:
        return image
    x1, y1, x2, y2 = box.as_int_tuple()
    w, h = image.size
    x1, y1 = max(0, x1), max(0, y1)
    x2, y2 = min(w, max(x2, x1 + 1)), min(h, max(y2, y1 + 1))
    return image.crop((x1, y1, x2, y2))

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from region_rerank.errors import ImageLoadError, ImageTooLargeError, URLFetchDisabledError
from region_rerank.images import (
    ImageLoadOptions,
    crop_pil,
    crop_resize,
    load_image,
    pil_to_tensor,
    to_rgb,
)
from region_rerank.types import Box


def _png_bytes(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture()
def rgb() -> Image.Image:
    arr = np.zeros((20, 30, 3), dtype=np.uint8)
    arr[:, :15] = (255, 0, 0)
    arr[:, 15:] = (0, 0, 255)
    return Image.fromarray(arr)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "1", "P", "CMYK", "I;16", "I", "F", "YCbCr"])
def test_every_mode_becomes_rgb(rgb: Image.Image, mode: str) -> None:
    src = rgb.convert("L").convert(mode) if mode in ("I;16", "I", "F") else rgb.convert(mode)
    out = load_image(src)
    assert out.mode == "RGB" and out.size == (30, 20)


def test_sixteen_bit_is_rescaled_not_clipped() -> None:
    arr = np.full((4, 4), 65535, dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    assert load_image(img).getpixel((0, 0)) == (255, 255, 255)
    arr[:] = 32768
    assert load_image(Image.fromarray(arr)).getpixel((0, 0))[0] == 128


def test_palette_transparency_composited_on_white() -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0] * 256)
    img.info["transparency"] = 0
    assert load_image(img).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 10), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert load_image(path).size == (10, 40)
    assert load_image(str(path)).size == (10, 40)


def test_paths_bytes_base64_data_uri_file_uri(rgb: Image.Image, tmp_path: Path) -> None:
    data = _png_bytes(rgb)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    b64 = base64.b64encode(data).decode()
    inputs = [
        path,
        str(path),
        f"file://{path}",
        data,
        bytearray(data),
        b64,
        f"data:image/png;base64,{b64}",
        base64.urlsafe_b64encode(data).decode().rstrip("="),
    ]
    for item in inputs:
        out = load_image(item)
        assert out.size == (30, 20) and out.getpixel((0, 0)) == (255, 0, 0), type(item)


def test_jpeg_base64_starting_with_slash(rgb: Image.Image) -> None:
    b64 = base64.b64encode(_png_bytes(rgb, "JPEG")).decode()
    assert b64.startswith("/9j/")
    assert load_image(b64).size == (30, 20)


def test_arrays_and_tensors(rgb: Image.Image) -> None:
    import torch

    arr = np.asarray(rgb)
    assert load_image(arr).getpixel((29, 0)) == (0, 0, 255)
    assert load_image(arr.astype(np.float32) / 255.0).getpixel((0, 0)) == (255, 0, 0)
    assert load_image(arr[:, :, 0]).mode == "RGB"
    assert load_image(np.dstack([arr, np.full((20, 30), 255, np.uint8)])).size == (30, 20)
    assert load_image(np.ones((3, 3), dtype=bool)).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(arr.astype(np.uint16) * 257).getpixel((0, 0)) == (255, 0, 0)
    chw = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    assert load_image(chw).getpixel((29, 0)) == (0, 0, 255)
    assert load_image(chw.float() / 255).size == (30, 20)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 7), np.uint8), np.full((2, 2), np.nan)],
)
def test_bad_arrays(bad: np.ndarray) -> None:
    with pytest.raises(ImageLoadError):
        load_image(bad)


def test_errors_are_typed(tmp_path: Path, rgb: Image.Image) -> None:
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageLoadError):
        load_image(b"not an image at all")
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"hello, I am text" * 10)
    with pytest.raises(ImageLoadError):
        load_image(fake)
    truncated = _png_bytes(rgb.resize((300, 300)), "JPEG")[:400]
    with pytest.raises(ImageLoadError):
        load_image(truncated)
    with pytest.raises(ImageLoadError):
        load_image(12345)
    with pytest.raises(ImageLoadError):
        load_image("definitely not an image")
    with pytest.raises(ImageLoadError):
        load_image(tmp_path)  # a directory


def test_url_refused_unless_allowed() -> None:
    with pytest.raises(URLFetchDisabledError, match="disabled"):
        load_image("https://example.com/cat.jpg")
    # enabled: the network is blocked in tests, so the fetch itself fails, with a typed error
    with pytest.raises(ImageLoadError):
        load_image("https://example.com/cat.jpg", ImageLoadOptions(allow_urls=True, url_timeout=1))


def test_pixel_budget_blocks_bombs() -> None:
    big = _png_bytes(Image.new("L", (4000, 4000)))
    with pytest.raises(ImageTooLargeError, match="exceeds the budget"):
        load_image(big, ImageLoadOptions(max_pixels=1_000_000))
    assert load_image(big).size == (4000, 4000)  # within the default budget


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = load_image(buf.getvalue())
    assert out.getpixel((0, 0))[0] > 200 and out.mode == "RGB"


def test_caller_image_is_not_modified(rgb: Image.Image) -> None:
    rgba = rgb.convert("RGBA")
    before = rgba.tobytes()
    load_image(rgba)
    assert rgba.mode == "RGBA" and rgba.tobytes() == before


def test_crop_resize_matches_torchvision(rgb: Image.Image) -> None:
    import torch
    from torchvision.transforms.v2 import functional as TF

    t = pil_to_tensor(rgb)
    assert t.dtype == torch.uint8 and t.shape == (3, 20, 30)
    out = crop_resize(t, [Box(5, 2, 25, 18), None], (16, 16), interpolation="bilinear")
    ref = TF.resized_crop(t.float() / 255, 2, 5, 16, 20, [16, 16], antialias=True)
    assert out.shape == (2, 3, 16, 16)
    assert torch.allclose(out[0], ref.clamp(0, 1), atol=1e-6)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    normed = crop_resize(t, [None], (8, 8), mean=mean, std=std)
    plain = crop_resize(t, [None], (8, 8))
    assert torch.allclose(normed, (plain - 0.5) / 0.25, atol=1e-6)


def test_crop_resize_center_crop_takes_the_centred_square() -> None:
    import torch

    arr = np.zeros((10, 30, 3), np.uint8)
    arr[:, 10:20] = 255  # only the centre square is white
    out = crop_resize(pil_to_tensor(Image.fromarray(arr)), [None], (10, 10), center_crop=True)
    assert torch.all(out > 0.99)


def test_crop_pil_clamps(rgb: Image.Image) -> None:
    assert crop_pil(rgb, None) is rgb
    assert crop_pil(rgb, Box(10, 5, 20, 15)).size == (10, 10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2048))
def test_fuzz_random_bytes_only_raise_typed_errors(data: bytes) -> None:
    try:
        out = load_image(data)
    except ImageLoadError:
        return
    assert out.mode == "RGB"


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=512), cut=st.integers(8, 2000))
def test_fuzz_corrupted_png(data: bytes, cut: int) -> None:
    good = _png_bytes(Image.new("RGB", (16, 16), "green"))
    mangled = good[:cut] + data
    try:
        out = load_image(mangled)
    except ImageLoadError:
        return
    assert out.mode == "RGB"


def test_caller_animation_keeps_its_frame_position() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    animation = Image.open(io.BytesIO(buf.getvalue()))
    animation.seek(2)
    out = load_image(animation)
    assert out.getpixel((0, 0))[0] > 200  # the first (red) frame, as for bytes input
    assert animation.tell() == 2  # the caller's object is where the caller left it
    assert to_rgb(animation).getpixel((0, 0))[2] > 200  # still showing the blue frame

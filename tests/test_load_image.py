"""`load_image`: every input kind, every colour mode, and every refusal, on files this test writes itself."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fgvc_core import ImageError, load_image
from fgvc_core.data import images as images_module


def _png_bytes(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", **kwargs)
    return buf.getvalue()


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _rgb(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


def _assert_user_error(exc_info: pytest.ExceptionInfo, *needles: str) -> str:
    """The error is an ImageError with one line, no chained raw exception, containing every needle."""
    exc = exc_info.value
    message = str(exc)
    assert type(exc) is ImageError
    assert "\n" not in message and message
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    for needle in needles:
        assert needle in message, message
    return message


@pytest.fixture
def pattern() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8)


# -------------------------------------------------------------------------------------------- input kinds
def test_path_bytes_and_filelike_give_identical_pixels(tmp_path: Path, pattern: np.ndarray) -> None:
    data = _png_bytes(Image.fromarray(pattern))
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    stream = io.BytesIO(data)
    stream.name = "upload.png"
    stream.read()  # a Streamlit rerun hands back an already-read object: the loader must rewind
    for source in (str(path), path, data, bytearray(data), memoryview(data), stream):
        image = load_image(source)
        assert image.size == (40, 24)
        np.testing.assert_array_equal(np.asarray(image), pattern)


def test_result_outlives_the_file(tmp_path: Path, pattern: np.ndarray) -> None:
    path = tmp_path / "gone.png"
    path.write_bytes(_png_bytes(Image.fromarray(pattern)))
    image = load_image(path)
    path.unlink()
    np.testing.assert_array_equal(np.asarray(image.resize((40, 24))), pattern)


# ------------------------------------------------------------------------------------------- colour modes
def test_rgba_is_composited_on_white() -> None:
    alphas = np.array([0, 64, 128, 200, 255], dtype=np.uint8)
    rgba = np.zeros((16, 16 * len(alphas), 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 200, 40, 0
    for i, a in enumerate(alphas):
        rgba[:, 16 * i : 16 * (i + 1), 3] = a
    out = _rgb(load_image(_png_bytes(Image.fromarray(rgba, "RGBA"))))
    for i, a in enumerate(alphas):
        expected = [round(c * int(a) / 255 + 255 * (1 - int(a) / 255)) for c in (200, 40, 0)]
        np.testing.assert_allclose(out[:, 16 * i : 16 * (i + 1)], np.broadcast_to(expected, (16, 16, 3)), atol=1)
    assert out[0, 0].tolist() == [255, 255, 255]  # alpha 0 is pure white, not the hidden colour


def test_la_is_composited_on_white() -> None:
    la = Image.merge("LA", (Image.new("L", (20, 20), 50), Image.new("L", (20, 20), 100)))
    out = _rgb(load_image(_png_bytes(la)))
    expected = round(50 * 100 / 255 + 255 * (1 - 100 / 255))
    assert np.abs(out - expected).max() <= 1


def test_grayscale_and_bilevel_become_equal_channels() -> None:
    gray = np.arange(20 * 30, dtype=np.uint32).reshape(20, 30) % 256
    out = _rgb(load_image(_png_bytes(Image.fromarray(gray.astype(np.uint8), "L"))))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)
    bilevel = Image.new("1", (20, 20), 0)
    bilevel.paste(1, (0, 0, 10, 20))
    out = _rgb(load_image(_png_bytes(bilevel)))
    assert out[:, :10].min() == 255 and out[:, 10:].max() == 0


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency(fmt: str) -> None:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    image.paste(1, (10, 0, 20, 20))  # right half: palette index 1 (blue), declared transparent
    out = _rgb(load_image(_encode(image, fmt, transparency=1)))
    assert (out[:, :10] == [255, 0, 0]).all()
    assert (out[:, 10:] == [255, 255, 255]).all()


def test_palette_without_transparency_keeps_colours() -> None:
    image = Image.new("P", (20, 20), 1)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    assert (_rgb(load_image(_png_bytes(image))) == [0, 0, 255]).all()


def test_cmyk_tiff_matches_naive_conversion() -> None:
    cmyk = np.array([[0, 0, 0, 0], [255, 0, 0, 0], [0, 128, 0, 64], [30, 60, 90, 120]], dtype=np.uint8)
    arr = np.repeat(np.repeat(cmyk[:, None, :], 16, axis=1), 16, axis=0)  # 4 horizontal bands, 64 x 16
    out = _rgb(load_image(_encode(Image.fromarray(arr, "CMYK"), "TIFF")))
    for band, (c, m, y, k) in enumerate(cmyk.astype(float)):
        expected = [255 * (1 - v / 255) * (1 - k / 255) for v in (c, m, y)]
        np.testing.assert_allclose(out[16 * band : 16 * (band + 1)], np.broadcast_to(expected, (16, 16, 3)), atol=1)


def test_cmyk_jpeg_decodes_to_its_colour() -> None:
    # PIL writes Adobe (inverted) CMYK JPEGs and reads them back; lossy, so a few levels of tolerance.
    out = _rgb(load_image(_encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)))
    assert np.abs(out - [255, 0, 0]).max() <= 4


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_grayscale_is_scaled_not_clipped(fmt: str) -> None:
    values = np.array([65535, 32896, 257, 0], dtype=np.uint16)
    arr = np.repeat(np.repeat(values[None, :], 16, axis=0), 16, axis=1)  # 16 x 64, four blocks
    source = Image.fromarray(arr)
    assert source.mode.startswith("I;16")
    out = _rgb(load_image(_encode(source, fmt)))
    for i, v in enumerate(values):
        assert np.abs(out[:, 16 * i : 16 * (i + 1)] - v / 257).max() <= 1  # 65535->255, 32896->128, 257->1


def test_16bit_rgb_png_is_scaled_per_channel() -> None:
    rgb16 = np.zeros((16, 16, 3), dtype=np.uint16)
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 65535, 32896, 0
    ok, buf = cv2.imencode(".png", rgb16[..., ::-1])  # OpenCV writes BGR
    assert ok
    out = _rgb(load_image(buf.tobytes()))
    assert np.abs(out - [255, 128, 0]).max() <= 1


def test_32bit_int_and_float_images_are_scaled() -> None:
    wide = np.array([[0, 65535]], dtype=np.int32).repeat(16, axis=0).repeat(16, axis=1)
    out = _rgb(load_image(_encode(Image.fromarray(wide, "I"), "TIFF")))
    assert out[:, :16].max() == 0 and out[:, 16:].min() == 255
    narrow = np.array([[0, 200]], dtype=np.int32).repeat(16, axis=0).repeat(16, axis=1)
    out = _rgb(load_image(_encode(Image.fromarray(narrow, "I"), "TIFF")))
    assert out[:, 16:].min() == 200 and out[:, 16:].max() == 200  # already 8-bit range: kept
    unit = np.array([[0.0, 0.5, 1.0]], dtype=np.float32).repeat(16, axis=0).repeat(16, axis=1)
    out = _rgb(load_image(_encode(Image.fromarray(unit, "F"), "TIFF")))
    assert [out[0, 0, 0], out[0, 16, 0], out[0, 32, 0]] == [0, 128, 255]


@pytest.mark.parametrize(("orientation", "turns"), [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation_is_applied(orientation: int, turns: int) -> None:
    # 8x8-aligned flat blocks keep JPEG close to exact
    blocks = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[255, 255, 0], [0, 0, 0], [255, 255, 255]]])
    arr = np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1).astype(np.uint8)  # 32 x 48
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = _rgb(load_image(_encode(Image.fromarray(arr), "JPEG", quality=98, subsampling=0, exif=exif)))
    expected = np.rot90(arr, k=turns).astype(int)  # np.rot90 k=1 is counter-clockwise
    assert out.shape == expected.shape
    assert np.abs(out - expected).mean() < 3


def test_exif_orientation_png_exact(pattern: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = np.asarray(load_image(_png_bytes(Image.fromarray(pattern), exif=exif)))
    np.testing.assert_array_equal(out, np.rot90(pattern, k=-1))


def test_animated_gif_gives_first_frame() -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(io.BytesIO(data)) as check:
        assert check.n_frames == 3
    assert (_rgb(load_image(data)) == [255, 0, 0]).all()


# ---------------------------------------------------------------------------------------------- refusals
def test_missing_path_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "nope" / "bird.jpg")
    _assert_user_error(info, "not found", "bird.jpg")


def test_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        load_image(tmp_path)
    _assert_user_error(info, "folder")


def test_empty_data_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        load_image(b"")
    _assert_user_error(info, "empty")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError) as info:
        load_image(empty)
    _assert_user_error(info, "empty", "empty.jpg")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_is_refused(tmp_path: Path, pattern: np.ndarray, fmt: str) -> None:
    big = np.repeat(np.repeat(pattern, 4, axis=0), 4, axis=1)  # enough data that half a file is still a header
    data = _encode(Image.fromarray(big), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as info:
        load_image(path)
    _assert_user_error(info, "truncated or corrupt", "cut.")


def test_corrupt_body_is_refused(pattern: np.ndarray) -> None:
    data = bytearray(_png_bytes(Image.fromarray(np.repeat(pattern, 4, axis=0))))
    data[60:200] = b"\x00" * 140  # trash the compressed stream after the header
    with pytest.raises(ImageError) as info:
        load_image(bytes(data))
    _assert_user_error(info, "corrupt")


@pytest.mark.parametrize(
    ("name", "payload"),
    [("notes.txt", b"hello, this is text\n"), ("paper.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF")],
)
def test_non_images_are_refused(tmp_path: Path, name: str, payload: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(ImageError) as info:
        load_image(path)
    _assert_user_error(info, "not an image", name)


def _png_claiming_size(width: int, height: int) -> bytes:
    """A valid 16x16 PNG whose IHDR claims another size (the decompression-bomb shape: tiny file, huge header)."""
    data = bytearray(_png_bytes(Image.new("L", (16, 16), 0)))
    assert data[12:16] == b"IHDR"
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


@pytest.mark.parametrize("side", [9000, 20000])  # 81 M (ours only) and 400 M pixels (above PIL's hard limit too)
def test_decompression_bomb_is_refused_quietly(side: int) -> None:
    assert side * side > images_module.MAX_PIXELS
    before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError) as info:
            load_image(_png_claiming_size(side, side))
    _assert_user_error(info, "too large")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert Image.MAX_IMAGE_PIXELS == before


def test_pixel_limit_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    # 8000 x 8000 fits PIL's own limit; our limit alone refuses it, from the header (the body is a 16x16 stream)
    assert 8000 * 8000 < Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError) as info:
        load_image(_png_claiming_size(8000, 8000 + 1))
    _assert_user_error(info, "too large", "8000x8001")
    monkeypatch.setattr(images_module, "MAX_PIXELS", 100 * 100)
    with pytest.raises(ImageError):
        load_image(_png_bytes(Image.new("RGB", (101, 100))))
    assert load_image(_png_bytes(Image.new("RGB", (100, 100)))).size == (100, 100)


@pytest.mark.parametrize(
    ("size", "needle"),
    [
        ((1, 1), "too small"),
        ((15, 40), "too small"),
        ((40, 15), "too small"),
        ((400, 20), "elongated"),
        ((20, 400), "elongated"),
    ],
)
def test_degenerate_sizes_are_refused(size: tuple[int, int], needle: str) -> None:
    with pytest.raises(ImageError) as info:
        load_image(_png_bytes(Image.new("RGB", size)))
    _assert_user_error(info, needle, f"{size[0]}x{size[1]}")


def test_strip_20000x3_is_refused() -> None:
    with pytest.raises(ImageError) as info:
        load_image(_png_claiming_size(20000, 3))
    _assert_user_error(info, "20000x3")


def test_size_limits_are_inclusive() -> None:
    assert load_image(_png_bytes(Image.new("RGB", (16, 16)))).size == (16, 16)
    assert load_image(_png_bytes(Image.new("RGB", (160, 16)))).size == (160, 16)  # aspect exactly MAX_ASPECT


def test_bad_source_types_are_refused() -> None:
    with pytest.raises(ImageError) as info:
        load_image(42)  # type: ignore[arg-type]
    _assert_user_error(info, "int")
    with pytest.raises(ImageError) as info:
        load_image(io.StringIO("text mode"))  # type: ignore[arg-type]
    _assert_user_error(info, "text mode")

"""`load_image`: the one door for every image, whether a user upload, a CLI path or a dataset file.

It returns a fully decoded 8-bit RGB image that looks the way the user sees the file (EXIF orientation applied,
transparency on white, 16-bit data scaled rather than clipped), or raises `ImageError` with one line a user can
act on. It never leaks a raw PIL/OSError: the app shows our message as is.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fgvc_core.errors import ImageError

MAX_PIXELS = 64_000_000
"""Largest width x height we decode. Checked from the header, before decoding, so a decompression bomb costs
nothing. Independent of (and never written to) PIL's global ``Image.MAX_IMAGE_PIXELS``."""

MAX_FILE_BYTES = 256 * 1024 * 1024
"""Largest file we read into memory (a guard against pointing the door at a multi-GB non-image)."""

MIN_SIDE = 16
"""Smallest width or height: below it there is nothing for a fine-grained model to see."""

MAX_ASPECT = 10.0
"""Largest long-side / short-side ratio: a 20000x3 strip would be squashed into noise by any preset."""

BACKGROUND = (255, 255, 255)
"""Colour transparent pixels are composited on: white, as a browser or an image viewer shows them."""

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]


def load_image(source: ImageSource) -> Image.Image:
    """Decode an image into a standalone RGB ``PIL.Image`` that users, the CLI, the app and datasets share.

    Args:
        source: A path (str or PathLike), the file's bytes, or a binary file-like object such as Streamlit's
            ``UploadedFile`` (read from its start).

    Returns:
        A fully loaded RGB image: EXIF orientation applied; grayscale, palette, CMYK and 16/32-bit data converted
        (high bit depths scaled to 8 bit, not clipped); alpha composited on white; the first frame of an
        animation.

    Raises:
        ImageError: Missing or unreadable file, a path that is not a regular file (folder, FIFO, device, socket,
            symlink loop: refused before it is opened, so nothing blocks or reads forever), more than
            `MAX_FILE_BYTES`, empty data, not an image, truncated/corrupt data, more than `MAX_PIXELS` pixels, a
            side under `MIN_SIDE`, or an aspect ratio over `MAX_ASPECT`.
    """
    data, name = _read_source(source)
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    with warnings.catch_warnings():
        # Our own MAX_PIXELS check replaces PIL's bomb warning; PIL's hard DecompressionBombError is caught below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                _check_size(im.size, name)
                im.seek(0)  # animations: the first frame
                im.load()  # force the full decode inside the guard, so truncation surfaces here
                image = _to_rgb(_exif_transpose(im), name)
        except ImageError:
            raise
        except Image.DecompressionBombError:
            raise ImageError(f"{name} is too large to open safely (more than {MAX_PIXELS:,} pixels)") from None
        except UnidentifiedImageError:
            raise ImageError(f"{name} is not an image in a format we can read (e.g. PNG, JPEG, WebP)") from None
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, EOFError... for broken data
            raise ImageError(f"{name} is truncated or corrupt and cannot be decoded ({_reason(exc)})") from None
    return image


def _read_source(source: ImageSource) -> tuple[bytes, str]:
    """Return the raw bytes and a display name for messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "the image data"
    if isinstance(source, (str, os.PathLike)):
        return _read_path(Path(source))
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        label = f"uploaded file {Path(str(name)).name!r}" if name else "the uploaded file"
        try:
            if getattr(source, "seekable", lambda: False)():
                source.seek(0)  # Streamlit reruns hand us the same object again
            data = source.read(MAX_FILE_BYTES + 1)
        except Exception as exc:
            raise ImageError(f"{label} cannot be read ({_reason(exc)})") from None
        if isinstance(data, str):
            raise ImageError(f"{label} was opened in text mode; pass a binary file or bytes")
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError(f"{label} did not return bytes when read")
        if len(data) > MAX_FILE_BYTES:
            raise ImageError(f"{label} is larger than {MAX_FILE_BYTES // 2**20} MiB")
        return bytes(data), label
    raise ImageError(f"cannot read an image from a {type(source).__name__}; pass a path, bytes or a binary file")


def _read_path(path: Path) -> tuple[bytes, str]:
    label = printable_path(path)
    try:
        return read_regular_file(path, MAX_FILE_BYTES), label
    except NotRegularFileError as exc:
        if exc.problem == MISSING:
            raise ImageError(f"image file not found: {label}") from None
        raise ImageError(f"{label} {exc.problem}") from None


def printable_path(path: Path | str) -> str:
    """``path`` as text for a one-line message: quoted with escapes when it holds a newline or control character."""
    text = str(path)
    return text if text.isprintable() else repr(text)


MISSING = "is missing"
"""The `regular_file_problem` of a path with nothing behind it (callers word "not found" their own way)."""


class NotRegularFileError(Exception):
    """A path is not a readable regular file; ``problem`` says why, as a phrase after the path."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path = path
        self.problem = problem


def regular_file_problem(path: Path) -> str | None:
    """Why ``path`` (symlinks followed) is not a regular file, as a phrase after the path, or None when it is one.

    Checked with ``stat`` before anything opens the file: opening a FIFO blocks until a writer appears, and
    ``/dev/zero`` never ends, so neither may reach ``open``/``read``.
    """
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return _os_error_problem(path, exc)
    except ValueError:  # an embedded NUL character
        return "has a NUL character in its name"
    return None if stat.S_ISREG(mode) else _kind_problem(mode)


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, refusing anything else and anything over ``max_bytes``.

    The size is counted while reading (``st_size`` can lie: ``/proc`` files, a file that grows). The file is
    opened non-blocking and checked again on the open descriptor, so a path swapped for a FIFO after the first
    check still cannot block.

    Raises:
        NotRegularFileError: Not a regular file (missing, folder, FIFO, device, socket, symlink loop, ...),
            unreadable, or larger than ``max_bytes``.
    """
    problem = regular_file_problem(path)
    if problem is not None:
        raise NotRegularFileError(path, problem)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise NotRegularFileError(path, _os_error_problem(path, exc)) from None
    with os.fdopen(fd, "rb", buffering=0) as file:
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISREG(mode):
                return _read_capped(file, path, max_bytes)
        except OSError as exc:
            raise NotRegularFileError(path, _os_error_problem(path, exc)) from None
    raise NotRegularFileError(path, _kind_problem(mode))  # swapped for something else since the check


def _read_capped(file: IO[bytes], path: Path, max_bytes: int) -> bytes:
    """Read to the end, but never more than ``max_bytes + 1`` bytes (the one extra byte proves "too large")."""
    chunks, total = [], 0
    while total <= max_bytes:
        chunk = file.read(min(_CHUNK_BYTES, max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > max_bytes:
        raise NotRegularFileError(path, f"is larger than {_size_text(max_bytes)}")
    return b"".join(chunks)


_CHUNK_BYTES = 1 << 20

_KINDS = (
    (stat.S_ISDIR, "is a folder, not an image file"),
    (stat.S_ISFIFO, "is a named pipe (FIFO), not a regular file"),
    (stat.S_ISCHR, "is a character device, not a regular file"),
    (stat.S_ISBLK, "is a block device, not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
)


def _kind_problem(mode: int) -> str:
    return next((text for is_kind, text in _KINDS if is_kind(mode)), "is not a regular file")


def _os_error_problem(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symlink loop (following its links never reaches a file)"
    if isinstance(exc, FileNotFoundError):
        return "is a broken symlink (the file it points to is missing)" if path.is_symlink() else MISSING
    if exc.errno == errno.ENOTDIR:
        return MISSING  # a file stands where a folder on the path should be
    if isinstance(exc, PermissionError):
        return "cannot be read: permission denied"
    return f"cannot be read ({exc.strerror or _reason(exc)})"


def _size_text(max_bytes: int) -> str:
    return f"{max_bytes // 2**20} MiB" if max_bytes >= 2**20 else f"{max_bytes} bytes"


def _check_size(size: tuple[int, int], name: str) -> None:
    """Refuse bombs and degenerate shapes from the header, before any pixel is decoded."""
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageError(f"{name} is too large: {width}x{height} pixels (limit {MAX_PIXELS:,} pixels)")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"{name} is too small: {width}x{height} pixels (each side must be at least {MIN_SIDE})")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise ImageError(f"{name} is too elongated: {width}x{height} pixels (aspect ratio above {MAX_ASPECT:g})")


def _to_rgb(im: Image.Image, name: str) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency goes on `BACKGROUND`."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_high_depth_to_uint8(np.asarray(im), mode)).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if mode == "RGB":
        return im.copy()
    try:
        return im.convert("RGB")  # 1, L, P, CMYK, YCbCr, ...
    except ValueError:
        raise ImageError(f"{name} uses colour mode {mode}, which cannot be converted to RGB") from None


def _high_depth_to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16-bit, 32-bit integer and float grayscale to 0..255 without clipping.

    - ``I;16*``: the full 16-bit range, ``v / 257`` (65535 -> 255, 32896 -> 128).
    - ``I``: values within 0..255 are kept, within 0..65535 are treated as 16 bit, anything else is min-max
      stretched (a 32-bit integer image carries no other clue to its range).
    - ``F``: values within 0..1 are scaled by 255, within 0..255 kept, anything else min-max stretched.
    """
    values = array.astype(np.float64)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and 255 < high <= 65535):
        scaled = values / 257.0
    elif mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    elif low >= 0 and high <= 255:
        scaled = values
    else:
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _exif_transpose(im: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF orientation tag says (phone photos); a broken EXIF block is ignored."""
    try:
        if im.getexif().get(0x0112, 1) in (None, 1):
            return im  # upright already: skip exif_transpose's full copy (every dataset image passes here)
        return ImageOps.exif_transpose(im)
    except Exception:
        return im


def _reason(exc: BaseException) -> str:
    """A one-line reason from an exception, for the end of a user message."""
    text = " ".join(str(exc).split())
    return text[:120] if text else type(exc).__name__

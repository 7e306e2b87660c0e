"""Robust image decoding: every failure becomes an ImageError with a short reason."""
from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import cv2
import numpy as np

DEFAULT_MAX_PIXELS = 100_000_000


class ImageError(Exception):
    """The file could not be used as an image; the message says why."""


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, BMP, GIF, TIFF, WebP, PNM or Sun raster header; None if unknown."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if kind == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _tiff_size(data)
    if data[:4] == b"\x59\xa6\x6a\x95" and len(data) >= 12:  # Sun raster
        return struct.unpack(">II", data[4:12])
    pnm = _PNM_HEADER.match(data[:1024])
    return (int(pnm[1]), int(pnm[2])) if pnm else None


# Portable anymap (.pbm .pgm .ppm .pnm): P1..P6, then width and height, with whitespace and comments between.
_PNM_HEADER = re.compile(rb"P[1-6](?:\s+|#[^\n]*\n)+(\d{1,9})(?:\s+|#[^\n]*\n)+(\d{1,9})\s")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:  # stray bytes between segments: skip to the next marker, as libjpeg does
            i = data.find(b"\xff", i)
            if i < 0:
                return None
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None


_TIFF_INTS = {3: "H", 4: "I", 16: "Q"}  # TIFF field types SHORT, LONG, LONG8


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """Width and height tags of the first image file directory (the page OpenCV decodes)."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")  # BigTIFF: 64-bit offsets and counts
    count, entry, value = ("Q", 20, 12) if big else ("H", 12, 8)
    size = {}
    try:
        ifd = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)[0]
        n = struct.unpack_from(order + count, data, ifd)[0]
        for at in range(ifd + struct.calcsize(count), ifd + struct.calcsize(count) + n * entry, entry):
            tag, kind = struct.unpack_from(order + "HH", data, at)
            if tag in (256, 257) and kind in _TIFF_INTS:
                size[tag] = struct.unpack_from(order + _TIFF_INTS[kind], data, at + value)[0]
    except struct.error:  # offsets past the end of the file
        return None
    return (size[256], size[257]) if len(size) == 2 else None


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` as an 8-bit BGR image as displayed (EXIF orientation applied; HEIC through
    pillow-heif and AVIF through Pillow, when installed).

    Grayscale, alpha, palette and 16-bit images are converted. Raises
    ImageError for unreadable, empty, truncated, oversized or non-image files.
    """
    try:
        data = Path(path).read_bytes()
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as e:
        raise ImageError(e.strerror or str(e)) from None
    if not data:
        raise ImageError("empty file (0 bytes)")
    if is_heif(data):
        return _read_heif(data, max_pixels)
    size = header_size(data)
    if size is None:  # nothing is decoded whose size is unknown: a decompression bomb could hide there
        raise ImageError("not a decodable image (unknown format or corrupt header)")
    _check_pixels(size, max_pixels)
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:]:
        raise ImageError("truncated JPEG (no end-of-image marker)")
    image = _decode(data)
    if image is None:
        raise ImageError("not a decodable image (unknown format or corrupt data)")
    _check_pixels((image.shape[1], image.shape[0]), max_pixels)
    return image


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    if size[0] * size[1] > max_pixels:
        raise ImageError(f"{size[0]}x{size[1]} pixels is over the limit of {max_pixels:,} "
                         "(raise it with --max-pixels)")


# The ftyp brands of HEIF still images: HEIC (HEVC-coded, as phones write them) and AVIF (AV1-coded).
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}
_ORIENTATION = 0x0112  # the EXIF tag Pillow gives an AVIF's rotation and mirroring as


def _brands(data: bytes) -> set[bytes]:
    """The major and compatible brands of an ISO base media ``ftyp`` box at the start of ``data``."""
    if data[4:8] != b"ftyp":
        return set()
    end = min(int.from_bytes(data[:4], "big"), len(data), 256)
    return {data[8:12]} | {data[i:i + 4] for i in range(16, end - 3, 4)}


def is_heif(data: bytes) -> bool:
    """Whether ``data`` starts as a HEIF file: HEIC or AVIF."""
    return bool(_brands(data) & (HEIF_BRANDS | AVIF_BRANDS))


def _is_avif(data: bytes) -> bool:
    brands = _brands(data)
    return bool(brands & AVIF_BRANDS) and not brands & (HEIF_BRANDS - {b"mif1", b"msf1"})


def heif_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a HEIC or AVIF photo as displayed, from its container: no pixels are decoded."""
    return _open_container(data)[1]


def _open_container(data: bytes) -> tuple[object, tuple[int, int]]:
    """The photo of a HEIC or AVIF file, pixels not yet decoded, and its size as displayed."""
    if _is_avif(data):
        image = _open_avif(data)
        return image, image.size[::-1] if image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8) else image.size
    heif = _open_heif(data)
    return heif, heif.size


def _read_heif(data: bytes, max_pixels: int) -> np.ndarray:
    """A HEIC or AVIF photo as displayed (its rotation and mirroring applied), 8-bit BGR, through the optional
    pillow-heif (HEIC) or Pillow (AVIF); its size is read from the container before the pixels are decoded."""
    photo, size = _open_container(data)
    _check_pixels(size, max_pixels)
    try:
        if _is_avif(data):  # Pillow gives its rotation and mirroring as an EXIF orientation
            from PIL import ImageOps
            photo = ImageOps.exif_transpose(photo).convert("RGB")
        pixels = np.asarray(photo)
    except (ValueError, RuntimeError, OSError) as e:
        raise _heif_error(e, data) from None
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGR if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR)


def _open_heif(data: bytes):
    """The HEIC container of ``data`` through pillow-heif (pixels decoded on first use)."""
    try:
        import pillow_heif
    except ImportError:
        raise ImageError("HEIC/HEIF photo: install pillow-heif to read it (pip install 'face-annotator[heic]') "
                         "or convert it to JPEG") from None
    try:
        return pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    except (ValueError, RuntimeError, OSError) as e:
        raise _heif_error(e, data) from None


def _open_avif(data: bytes):
    """The AVIF photo of ``data`` through Pillow (11.3 or later; pixels decoded on first use)."""
    try:
        from PIL import Image, features
        readable = features.check("avif")
    except ImportError:
        readable = False
    if not readable:
        raise ImageError("AVIF photo: install Pillow 11.3 or later to read it (pip install 'face-annotator[avif]') "
                         "or convert it to JPEG")
    Image.MAX_IMAGE_PIXELS = None  # the pixel limit is ours (--max-pixels), checked before decoding
    try:
        return Image.open(io.BytesIO(data), formats=["AVIF"])
    except (ValueError, RuntimeError, OSError) as e:  # PIL.UnidentifiedImageError is an OSError
        raise _heif_error(e, data) from None


def _heif_error(e: Exception, data: bytes) -> ImageError:
    if _is_avif(data):  # Pillow's message names only its file object
        return ImageError("not a decodable AVIF image (corrupt or truncated)")
    reason = ": ".join(str(e).splitlines()[0].split(": ")[:2])  # libheif's error and its first detail
    return ImageError(f"not a decodable HEIF image ({reason})")


def _decode(data: bytes) -> np.ndarray | None:
    """cv2.imdecode to 8-bit BGR, with OpenCV's own warnings held back (the ImageError says why: one line)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    finally:
        cv2.utils.logging.setLogLevel(level)

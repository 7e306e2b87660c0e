"""Hostile input through the real CLI: odd formats work, bad files fail alone and clearly."""
from __future__ import annotations

import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pillow_heif
import pytest
from PIL import Image, features

from annotator.formats import read_pts
from annotator.images import ImageError, header_size, read_image
from conftest import annotate, summary_line

FACE = "1051618982_1"


@pytest.fixture
def face(photos) -> np.ndarray:
    return cv2.imread(str(photos / f"{FACE}.jpg"))


def run_one(tmp_path: Path, write, detector: str | None = "hog") -> tuple:
    """Write one input image with ``write(path)``, annotate it, return (result, out folder)."""
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    write(folder)
    out = tmp_path / "out"
    return annotate(folder, "--out", out, check=False, detector=detector), out


@pytest.mark.parametrize("kind", ["alpha", "16bit", "gray", "cmyk", "palette"])
def test_odd_pixel_formats_are_annotated(tmp_path, face, kind):
    rgb = cv2.cvtColor(face, cv2.COLOR_BGR2RGB)

    def write(folder):
        if kind == "alpha":
            cv2.imwrite(str(folder / "x.png"), cv2.cvtColor(face, cv2.COLOR_BGR2BGRA))
        elif kind == "16bit":
            cv2.imwrite(str(folder / "x.png"), face.astype(np.uint16) * 257)
        elif kind == "gray":
            cv2.imwrite(str(folder / "x.png"), cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
        elif kind == "cmyk":
            Image.fromarray(rgb).convert("CMYK").save(folder / "x.jpg")
        else:
            Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE).save(folder / "x.png")

    result, out = run_one(tmp_path, write)
    assert result.returncode == 0, result.stderr
    assert len(read_pts(out / "x.pts")) == 68


def test_heic_photo_is_annotated_as_its_png_and_a_broken_one_fails_alone(tmp_path, face):
    def write(folder):
        cv2.imwrite(str(folder / "x.png"), face)
        pillow_heif.from_pillow(Image.fromarray(cv2.cvtColor(face, cv2.COLOR_BGR2RGB))).save(folder / "y.heic",
                                                                                             quality=95)
        (folder / "broken.heic").write_bytes((folder / "y.heic").read_bytes()[:3000])

    result, out = run_one(tmp_path, write)
    assert result.returncode == 1 and "broken.heic: not a decodable HEIF image" in result.stderr
    assert np.abs(read_pts(out / "y.pts") - read_pts(out / "x.pts")).mean() < 0.5  # the same face, HEVC-coded
    assert read_image(tmp_path / "in" / "y.heic").shape == face.shape
    with pytest.raises(ImageError, match="over the limit of 1,000"):
        read_image(tmp_path / "in" / "y.heic", max_pixels=1000)

    coco = annotate("export", out, "--to", "coco", "--out", tmp_path / "faces.json", check=False)
    assert "1 on HEIC/HEIF/AVIF photos" in coco.stderr  # COCO readers cannot decode it: left out, said so
    annotate("export", out, "--to", "300w", "--out", tmp_path / "300w")
    assert cv2.imread(str(tmp_path / "300w" / "y.png")).shape == face.shape  # written as PNG


def test_heic_without_pillow_heif_says_how_to_read_it(tmp_path, face, monkeypatch):
    path = tmp_path / "y.heic"
    pillow_heif.from_pillow(Image.fromarray(face)).save(path)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if not installed
    with pytest.raises(ImageError, match=r"install pillow-heif .*face-annotator\[heic\].* or convert it to JPEG"):
        read_image(path)


def test_avif_photo_is_read_as_displayed_and_a_broken_one_fails_alone(tmp_path, face):
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(cv2.cvtColor(face, cv2.COLOR_BGR2RGB))))
    exif = Image.Exif()
    exif[0x0112] = 6  # written as the AVIF's own rotation (an irot box): turned right to display

    def write(folder):
        cv2.imwrite(str(folder / "x.png"), face)
        stored.save(folder / "y.avif", quality=95, exif=exif.tobytes())
        (folder / "broken.avif").write_bytes((folder / "y.avif").read_bytes()[:3000])

    result, out = run_one(tmp_path, write)
    assert result.returncode == 1 and "broken.avif: not a decodable AVIF image (corrupt or truncated)" in result.stderr
    assert np.abs(read_pts(out / "y.pts") - read_pts(out / "x.pts")).mean() < 0.5  # the same face, upright
    with pytest.raises(ImageError, match="over the limit of 1,000"):
        read_image(tmp_path / "in" / "y.avif", max_pixels=1000)
    annotate("export", out, "--to", "300w", "--out", tmp_path / "300w")
    assert cv2.imread(str(tmp_path / "300w" / "y.png")).shape == face.shape  # written upright, as PNG


def test_avif_without_pillow_avif_says_how_to_read_it(tmp_path, face, monkeypatch):
    path = tmp_path / "y.avif"
    Image.fromarray(face).save(path)
    monkeypatch.setattr(features, "check", lambda name: False)  # as with a Pillow older than 11.3
    with pytest.raises(ImageError, match=r"install Pillow 11.3 .*face-annotator\[avif\].* or convert it to JPEG"):
        read_image(path)


def test_photos_in_formats_not_decoded_are_counted_not_failed(tmp_path, face):
    def write(folder):
        cv2.imwrite(str(folder / "x.jpg"), face)
        (folder / "raw").mkdir()
        for name in ("a.CR2", "b.cr2", "c.jxl"):  # camera RAW and JPEG XL: not decoded
            (folder / "raw" / name).write_bytes(b"\0" * 100)
        (folder / "x.CR2").write_bytes(b"\0" * 100)  # a RAW+JPEG pair: the shot is read as x.jpg

    result, out = run_one(tmp_path, write)
    assert result.returncode == 0, result.stderr
    assert "1 image: 1 with 1 face" in result.stderr
    assert ("not read: 3 photos in formats annotate does not decode (2 .cr2, 1 .jxl); convert them to JPEG, "
            "PNG or TIFF; 1 more has a photo of the same name beside it, which was read") in result.stderr

    shutil.rmtree(tmp_path / "in" / "raw")  # only the pair left: nothing to convert
    result = annotate(tmp_path / "in", "--out", out, "--overwrite")
    assert ("not read: 1 photo in formats annotate does not decode, each with a photo of the same name beside "
            "it, which was read (a camera's RAW+JPEG pair)") in result.stderr


def test_exif_rotation_points_on_displayed_face(tmp_path, face):
    upright = tmp_path / "upright"
    upright.mkdir()
    cv2.imwrite(str(upright / "x.png"), face)
    annotate(upright, "--out", tmp_path / "ref")
    stored = np.ascontiguousarray(np.rot90(cv2.cvtColor(face, cv2.COLOR_BGR2RGB)))  # turned left on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display

    def write(folder):
        Image.fromarray(stored).save(folder / "x.jpg", exif=exif, quality=95)

    result, out = run_one(tmp_path, write)
    assert result.returncode == 0, result.stderr
    ref, got = read_pts(tmp_path / "ref" / "x.pts"), read_pts(out / "x.pts")
    assert np.abs(ref - got).mean() < 0.03 * (ref.max(0) - ref.min(0)).mean()


@pytest.mark.parametrize("detector", ["hog", None])  # None: the default, the CNN
@pytest.mark.parametrize("side", [1, 10])
def test_tiny_images_have_no_face_and_no_error(tmp_path, side, detector):
    result, out = run_one(tmp_path, lambda f: cv2.imwrite(str(f / "tiny.png"), np.zeros((side, side, 3), np.uint8)),
                          detector)
    assert result.returncode == 0 and "1 without a face" in result.stderr
    assert not list(out.glob("*.pts"))


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\x00" * 64)


def test_decompression_bomb_refused(tmp_path, photos):
    result, out = run_one(tmp_path, lambda f: (f / "bomb.png").write_bytes(_png_header_only(60000, 60000)))
    assert result.returncode == 1
    assert "bomb.png" in result.stderr and "over the limit" in result.stderr
    small = annotate(photos, "--out", tmp_path / "limited", "--max-pixels", "1000", check=False)
    assert small.returncode == 1 and "over the limit of 1,000" in (tmp_path / "limited" / "failures.log").read_text()


def _tiff_header_only(width: int, height: int, order: str, big: bool) -> bytes:
    """A TIFF (BigTIFF if ``big``) whose one directory says width x height, with no pixel data."""
    mark = b"II" if order == "<" else b"MM"
    if big:
        tags = b"".join(struct.pack(order + "HHQQ", tag, 16, 1, v) for tag, v in ((256, width), (257, height)))
        return mark + struct.pack(order + "HHHQQ", 43, 8, 0, 16, 2) + tags + bytes(8)
    tags = b"".join(struct.pack(order + "HHII", tag, 4, 1, v) for tag, v in ((256, width), (257, height)))
    return mark + struct.pack(order + "HIH", 42, 8, 2) + tags + bytes(4)


def test_tiff_bombs_refused_from_header_and_real_tiff_annotated(tmp_path, face):
    def write(folder):
        for name, order, big in [("le", "<", False), ("be", ">", False), ("big", "<", True)]:
            (folder / f"bomb_{name}.tif").write_bytes(_tiff_header_only(70000, 50000, order, big))
        Image.fromarray(cv2.cvtColor(face, cv2.COLOR_BGR2RGB)).save(folder / "face.tiff", compression="tiff_lzw")

    result, out = run_one(tmp_path, write)
    assert result.returncode == 1 and "3 failed" in result.stderr
    for name in ("le", "be", "big"):
        assert f"bomb_{name}.tif: 70000x50000 pixels is over the limit" in result.stderr
    assert len(read_pts(out / "face.pts")) == 68


@pytest.mark.parametrize("mode, options", [("RGB", {}), ("RGB", {"big_tiff": True}), ("I;16B", {})])
def test_tiff_header_size_matches_pillow(tmp_path, mode, options):
    path = tmp_path / "x.tif"
    Image.new(mode, (321, 123)).save(path, **options)
    assert path.read_bytes()[:2] == (b"MM" if mode == "I;16B" else b"II")
    assert header_size(path.read_bytes()) == (321, 123)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without permission")
def test_unreadable_file(tmp_path, photos):
    (photos / "secret.jpg").write_bytes((photos / f"{FACE}.jpg").read_bytes())
    (photos / "secret.jpg").chmod(0)
    result = annotate(photos, "--out", tmp_path / "out", check=False)
    assert result.returncode == 1 and "secret.jpg: permission denied" in result.stderr


def test_non_ascii_and_spaces_in_names(tmp_path, photos):
    folder = tmp_path / "фото папка"
    folder.mkdir()
    shutil.copy(photos / f"{FACE}.jpg", folder / "лицо 1.jpg")
    out = tmp_path / "out dir"
    annotate(folder, "--out", out)
    assert len(read_pts(out / "лицо 1.pts")) == 68


def test_a_file_name_that_is_not_utf8_goes_through_run_resume_review_and_export(tmp_path, photos):
    # a Latin-1 name, as old Windows archives and shares hold them: Python sees a lone surrogate
    name = os.fsdecode(b"caf\xe9.jpg")
    (tmp_path / "in").mkdir()
    shutil.copy(photos / f"{FACE}.jpg", tmp_path / "in" / name)
    out = tmp_path / "out"
    first = annotate(tmp_path / "in", "--out", out, "--format", "json", check=False)
    assert first.returncode == 0, first.stderr  # the index write crashed the run
    again = annotate(tmp_path / "in", "--out", out, "--format", "json")
    assert "1 already done" in summary_line(again.stderr)  # the journal names the file as it is
    assert os.fsencode(str(tmp_path / "in" / name)) in (out / "faces.csv").read_bytes()
    annotate("review", out, "--worst", "2", "--out", tmp_path / "sheet.jpg")  # OpenCV's text crashed on it
    assert cv2.imread(str(tmp_path / "sheet.jpg")) is not None
    annotate("export", out, "--to", "300w", "--out", tmp_path / "300w")
    (pts,) = (tmp_path / "300w").glob("*.pts")
    assert os.fsencode(pts.name) == b"caf\xe9.pts" and len(read_pts(pts)) == 68


def test_symlink_loop_terminates(tmp_path, photos):
    (photos / "loop").symlink_to(photos, target_is_directory=True)
    result = annotate(photos, "--out", tmp_path / "out")
    assert summary_line(result.stderr).startswith("4 images: ")

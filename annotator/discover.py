"""Lazy walk of input paths, and the output file names for each image."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# What OpenCV decodes and images.header_size can size before decoding: JPEG, PNG, BMP, TIFF, WebP, GIF,
# the portable anymaps and Sun raster; and HEIC (phones' photos) through pillow-heif, AVIF through Pillow, when
# installed.
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif", ".pbm",
                    ".pgm", ".ppm", ".pnm", ".sr", ".ras", ".heic", ".heif", ".hif", ".avif"}
# Photo formats the tool does not decode (camera RAW, JPEG XL): not walked, but counted for the summary.
UNREAD_EXTENSIONS = {".jxl", ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2",
                     ".raf", ".orf", ".rw2", ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".kdc", ".mrw"}
PAIRED = "paired"  # the key under which ``walk`` counts those with a photo of the same name beside them


@dataclass(frozen=True)
class Item:
    """An input image: its path, its path relative to its input root, and its output name.

    ``name`` is the stem (``a``), or the whole file name (``a.jpg``) when another
    image in the same folder has the same stem (``a.png``) or is named like one of
    its numbered faces (``a_1.jpg``), so neither overwrites the other's files.
    """

    path: Path
    relative: Path
    name: str
    error: str | None = None  # set for a folder that could not be listed: reported as a failure

    @property
    def key(self) -> str:
        """The absolute input path: identifies the image in the resume journal."""
        return str(self.path.absolute())

    def output(self, out_dir: Path, suffix: str) -> Path:
        """Output file for this image under ``out_dir``: the input tree mirrored."""
        return out_dir / self.relative.parent / (self.name + suffix)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def walk(inputs: list[str | Path], exclude: list[Path] = (), unread: Counter | None = None) -> Iterator[Item]:
    """Images under ``inputs`` (files or folders, recursively), yielded as found.

    Folders are listed in sorted order, one folder at a time (memory stays
    flat). Folders in ``exclude`` (the output folders) are never entered, and
    symlinked folders already visited are skipped, so symlink loops end.
    ``unread`` counts the photos in folders that are in a format the tool does not decode, by extension, or
    under ``PAIRED`` when a photo it reads has the same name beside them (a camera's RAW+JPEG pair).
    """
    exclude = {Path(e).resolve() for e in exclude}
    files = [Path(p) for p in inputs]
    names = dict(zip(files, _output_names(files)))  # named files all write to the top of the output
    for root in files:
        if root.is_file():
            yield Item(root, Path(root.name), names[root])
        elif root.is_dir():
            yield from _walk_dir(root, root, exclude, set(), Counter() if unread is None else unread)
        else:
            raise FileNotFoundError(f"{root}: no such file or folder")


def _walk_dir(folder: Path, root: Path, exclude: set[Path], seen: set, unread: Counter) -> Iterator[Item]:
    real = folder.resolve()
    if real in exclude or real in seen:
        return
    seen.add(real)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        yield Item(folder, folder.relative_to(root), folder.name, f"cannot list folder: {e.strerror or e}")
        return
    images = [Path(e.path) for e in entries if is_image(Path(e.path)) and not _is_dir(e)]
    stems = {p.stem for p in images}  # a camera's RAW+JPEG pair: the shot is read through its JPEG
    unread.update(PAIRED if Path(e.name).stem in stems else suffix for e in entries
                  if (suffix := Path(e.name).suffix.lower()) in UNREAD_EXTENSIONS and not _is_dir(e))
    for path, name in zip(images, _output_names(images)):
        yield Item(path, path.relative_to(root), name)
    for entry in entries:
        if _is_dir(entry):
            yield from _walk_dir(Path(entry.path), root, exclude, seen, unread)


def _output_names(images: list[Path]) -> list[str]:
    """Each image's output name (see :class:`Item`) among images that write to one output folder."""
    stems = Counter(p.stem for p in images)
    numbered = set()
    for stem in stems:
        base, _, k = stem.rpartition("_")
        if base and k.isascii() and k.isdigit():
            numbered.add(base)  # another image's outputs could be named like base's faces
    return [p.stem if stems[p.stem] == 1 and p.stem not in numbered else p.name for p in images]


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False

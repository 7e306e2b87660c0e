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
    """An input image: its path, its place in the output tree (``relative``: see :func:`walk`), its output name.

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

    One input is mirrored from itself (a folder's tree; a file at the top). Several are mirrored from the
    folder that holds them all, so that each keeps its own place (``trips/2023/IMG_0001.JPG`` and
    ``trips/2024/IMG_0001.JPG`` never write the same file); an input inside another one, or given twice,
    is walked once. Folders are listed in sorted order, one folder at a time (memory stays flat). Folders in
    ``exclude`` (the output folders) are never entered, and symlinked folders already visited are skipped,
    so symlink loops end. ``unread`` counts the photos in folders that are in a format the tool does not
    decode, by extension, or under ``PAIRED`` when a photo it reads has the same name beside them (a
    camera's RAW+JPEG pair).
    """
    exclude = {Path(e).resolve() for e in exclude}
    roots = _distinct([Path(p) for p in inputs])
    base = _base(roots)
    names = _named_file_names([r for r in roots if r.is_file()])
    for root in roots:
        place = _absolute(root).relative_to(base)
        if root.is_file():
            yield Item(root, place, names[root])
        elif root.is_dir():
            yield from _walk_dir(root, root, place, exclude, set(), Counter() if unread is None else unread)
        else:
            raise FileNotFoundError(f"{root}: no such file or folder")


def _distinct(inputs: list[Path]) -> list[Path]:
    """The inputs less those given twice or inside another input folder (symlinks resolved)."""
    real = [p.resolve() for p in inputs]
    folders = {r for r in real if r.is_dir()}
    kept, seen = [], set()
    for path, r in zip(inputs, real):
        if r not in seen and not folders.intersection(r.parents):
            kept.append(path)
        seen.add(r)
    return kept


def _base(roots: list[Path]) -> Path:
    """Where outputs are placed from: a lone folder itself, a lone file's folder, or the inputs' common folder."""
    if len(roots) == 1:
        return _absolute(roots[0]) if roots[0].is_dir() else _absolute(roots[0]).parent
    return Path(os.path.commonpath([_absolute(r) for r in roots]))


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))  # ``..`` folded, symlinks kept as named


def _named_file_names(files: list[Path]) -> dict[Path, str]:
    """Output names of the files named as inputs, among those that write to the same folder."""
    folders: dict[Path, list[Path]] = {}
    for f in files:
        folders.setdefault(_absolute(f).parent, []).append(f)
    return {f: name for group in folders.values() for f, name in zip(group, _output_names(group))}


def _walk_dir(folder: Path, root: Path, place: Path, exclude: set[Path], seen: set,
              unread: Counter) -> Iterator[Item]:
    """``folder``'s images, its subfolders' after them; ``root`` (the input) is mirrored at ``place``."""
    real = folder.resolve()
    if real in exclude or real in seen:
        return
    seen.add(real)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        yield Item(folder, place / folder.relative_to(root), folder.name, f"cannot list folder: {e.strerror or e}")
        return
    images = [Path(e.path) for e in entries if is_image(Path(e.path)) and not _is_dir(e)]
    stems = {p.stem for p in images}  # a camera's RAW+JPEG pair: the shot is read through its JPEG
    unread.update(PAIRED if Path(e.name).stem in stems else suffix for e in entries
                  if (suffix := Path(e.name).suffix.lower()) in UNREAD_EXTENSIONS and not _is_dir(e))
    for path, name in zip(images, _output_names(images)):
        yield Item(path, place / path.relative_to(root), name)
    for entry in entries:
        if _is_dir(entry):
            yield from _walk_dir(Path(entry.path), root, place, exclude, seen, unread)


def _output_names(images: list[Path]) -> list[str]:
    """Each image's output name (see :class:`Item`) among images that write to one output folder."""
    stems = Counter(p.stem.casefold() for p in images)  # letter case aside, as macOS and Windows compare names
    numbered = set()
    for stem in stems:
        base, _, k = stem.rpartition("_")
        if base and k.isascii() and k.isdigit():
            numbered.add(base)  # another image's outputs could be named like base's faces
    return [p.stem if stems[(stem := p.stem.casefold())] == 1 and stem not in numbered else p.name for p in images]


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False

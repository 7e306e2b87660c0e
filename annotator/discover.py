"""Lazy walk of input paths, and the output file names for each image."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# What OpenCV decodes and images.header_size can size before decoding: JPEG, PNG, BMP, TIFF, WebP, GIF,
# the portable anymaps and Sun raster.
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif", ".pbm",
                    ".pgm", ".ppm", ".pnm", ".sr", ".ras"}


@dataclass(frozen=True)
class Item:
    """An input image: its path, its path relative to its input root, and its output name.

    ``name`` is the stem (``a``), or the whole file name (``a.jpg``) when another
    image in the same folder has the same stem, so a.jpg and a.png never share outputs.
    """

    path: Path
    relative: Path
    name: str
    error: str | None = None  # set for a folder that could not be listed: reported as a failure
    taken: frozenset[str] = frozenset()  # other images' output names that look like ``<name>_<k>``

    @property
    def key(self) -> str:
        """The absolute input path: identifies the image in the resume journal."""
        return str(self.path.absolute())

    def output(self, out_dir: Path, suffix: str) -> Path:
        """Output file for this image under ``out_dir``: the input tree mirrored."""
        return out_dir / self.relative.parent / (self.name + suffix)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def walk(inputs: list[str | Path], exclude: list[Path] = ()) -> Iterator[Item]:
    """Images under ``inputs`` (files or folders, recursively), yielded as found.

    Folders are listed in sorted order, one folder at a time (memory stays
    flat). Folders in ``exclude`` (the output folders) are never entered, and
    symlinked folders already visited are skipped, so symlink loops end.
    """
    exclude = {Path(e).resolve() for e in exclude}
    files = _numbered([Path(p).stem for p in inputs])  # named files all write to the top of the output
    for root in map(Path, inputs):
        if root.is_file():
            yield Item(root, Path(root.name), root.stem, taken=files.get(root.stem, frozenset()))
        elif root.is_dir():
            yield from _walk_dir(root, root, exclude, set())
        else:
            raise FileNotFoundError(f"{root}: no such file or folder")


def _walk_dir(folder: Path, root: Path, exclude: set[Path], seen: set) -> Iterator[Item]:
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
    stems = Counter(p.stem for p in images)
    names = [p.stem if stems[p.stem] == 1 else p.name for p in images]
    numbered = _numbered(names)
    for path, name in zip(images, names):
        yield Item(path, path.relative_to(root), name, taken=numbered.get(name, frozenset()))
    for entry in entries:
        if _is_dir(entry):
            yield from _walk_dir(Path(entry.path), root, exclude, seen)


def _numbered(names: list[str]) -> dict[str, frozenset[str]]:
    """For each ``a``, the names ``a_1``, ``a_2``, ... among ``names``: another image's outputs, not ``a``'s."""
    found: dict[str, set[str]] = {}
    for name in names:
        base, _, k = name.rpartition("_")
        if base and k.isascii() and k.isdigit():
            found.setdefault(base, set()).add(name)
    return {base: frozenset(v) for base, v in found.items()}


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False

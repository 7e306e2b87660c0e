"""Memory and throughput of annotate over generated trees of small images.

    python benchmarks/scale.py 1000 10000 100000 [--jobs 1 2] [--dask]

For each size N, writes N small PNGs (64x64, 100 per folder) under a
temporary folder, runs the real command on them and reports images/s and the
peak resident memory of the annotate process and its workers (psutil sampling).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import psutil


def make_tree(root: Path, n: int) -> None:
    png = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))[1].tobytes()
    for i in range(n):
        folder = root / f"{i // 10000:03d}" / f"{i // 100 % 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:07d}.png").write_bytes(png)


def run(root: Path, out: Path, args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB summed over the process tree) of one annotate run."""
    t = time.perf_counter()
    proc = psutil.Popen([sys.executable, "-m", "annotator", str(root), "--out", str(out), "--quiet", *args],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    if proc.returncode:
        raise SystemExit(f"annotate exited {proc.returncode}")
    return time.perf_counter() - t, peak / 2 ** 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", type=int, nargs="+")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1])
    parser.add_argument("--dask", action="store_true", help="also run --backend dask (local cluster)")
    a = parser.parse_args()
    print("| files | run | images/s | peak RSS (MiB) |\n|---|---|---|---|")
    for n in a.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "images"
            make_tree(root, n)
            runs = [["-j", str(j)] for j in a.jobs] + ([["--backend", "dask"]] if a.dask else [])
            for args in runs:
                secs, rss = run(root, Path(tmp) / ("out" + "".join(args)), args)
                print(f"| {n} | {' '.join(args)} | {n / secs:.0f} | {rss:.0f} |", flush=True)


if __name__ == "__main__":
    main()

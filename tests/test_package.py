"""What the wheel installs: only the tool's own package, with its licence."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_one_package_and_a_licence(tmp_path):
    source = tmp_path / "source"  # a clean copy: a stale build/ folder must not leak into the wheel
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__",
                                                                "runs", "cache*", "reports"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source), "-w", str(tmp_path)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"annotator"}
    assert "annotator/training/fit.py" in names and "annotator/weights/landmarks68.pt" in names
    assert "annotator/export/coco.py" in names
    assert {f"annotator/review_server/static/{n}" for n in ("index.html", "app.js", "style.css")} <= set(names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert b"License: MIT" in metadata and any(n.endswith("/LICENSE") for n in names)

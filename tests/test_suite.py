"""The test suite itself: without the photos it skips locally and fails loudly under CI."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def _run_without_data(ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["ANNOTATOR_DATA"] = str(ROOT / "no-such-data")
    if ci is not None:
        env["CI"] = ci
    test = "tests/test_geometry.py::test_max_side_boxes_map_back"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_missing_data_fails_under_ci_and_skips_otherwise():
    failed = _run_without_data("true")
    assert failed.returncode == 1 and "data not found" in failed.stdout and "1 error" in failed.stdout
    skipped = _run_without_data(None)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout

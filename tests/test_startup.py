"""Start-up: what the parent and the workers load before the first image."""
from __future__ import annotations

import subprocess
import sys

import torch

from conftest import PHOTOS, ROOT, outputs


def test_parallel_run_leaves_torch_to_the_workers(photos, tmp_path):
    flag = tmp_path / "parent_imported_torch"
    code = ("import atexit, sys; from pathlib import Path\n"
            f"atexit.register(lambda: Path({str(flag)!r}).write_text(str('torch' in sys.modules)))\n"
            "from annotator.cli import main; main()")
    for jobs in ("2", "1"):
        run = subprocess.run([sys.executable, "-c", code, str(photos / f"{PHOTOS[0]}.jpg"), "--out",
                              str(tmp_path / jobs), "-j", jobs], cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert flag.read_text() == ("False" if jobs == "2" else "True")
    assert outputs(tmp_path / "2") == outputs(tmp_path / "1") != {}


def test_bad_weights_fail_once_before_any_image_with_workers(photos, tmp_path):
    bad, run_checkpoint = tmp_path / "bad.pt", tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    torch.save({"config": {}, "state_dict": {}, "meta": {}}, run_checkpoint)  # a training run's, not exported
    for weights, reason in ((bad, "not a checkpoint torch can read"),
                            (run_checkpoint, "a training run's checkpoint, not exported weights")):
        run = subprocess.run([sys.executable, "-m", "annotator", str(photos), "--out", str(tmp_path / "out"),
                              "-j", "2", "--weights", str(weights)], cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 1 and f"cannot load the network landmarker from {weights}" in run.stderr
        assert reason in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not list((tmp_path / "out").rglob("*.pts"))

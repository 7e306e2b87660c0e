"""A killed run loses nothing: the rerun completes it exactly as an uninterrupted run would."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from annotator.index import KEY
from conftest import annotate, finish, many_photos, outputs, start_annotate, wait_for_journal


def start_and_stop(folder: Path, out: Path, sig: int, after: int) -> subprocess.CompletedProcess:
    """Start annotate, send ``sig`` once ``after`` images are done, return the finished process."""
    proc = start_annotate(folder, "--out", out, "-j", "1")
    wait_for_journal(proc, out, after)
    if proc.poll() is None:
        proc.send_signal(sig)
    return finish(proc)


def test_sigkill_then_rerun_equals_uninterrupted_run(photos, tmp_path):
    folder = many_photos(photos, tmp_path)
    annotate(folder, "--out", tmp_path / "reference", "-j", "1")
    out = tmp_path / "killed"
    killed = start_and_stop(folder, out, signal.SIGKILL, after=8)
    assert killed.returncode == -signal.SIGKILL
    partial = outputs(out)
    assert 0 < len(partial) < len(outputs(tmp_path / "reference"))
    tear_index(out, tmp_path / "reference")
    rerun = annotate(folder, "--out", out, "-j", "2")
    assert "already done" in rerun.stderr
    assert outputs(out) == outputs(tmp_path / "reference")
    assert all(p.stat().st_size > 0 for p in out.rglob("*.pts"))
    assert not (out / ".annotate-tmp").exists()
    done = (out / ".annotate-done-pts.log").read_text().splitlines()
    assert len(done) == len(set(done)) == 40  # every image recorded exactly once
    assert sorted(index_lines(out)) == sorted(index_lines(tmp_path / "reference"))


def index_lines(out: Path) -> list[str]:
    lines = (out / "faces.csv").read_text().splitlines()
    assert lines[0].startswith("image,output,") and len(lines) > 1
    return lines


def tear_index(out: Path, reference: Path) -> None:
    """Leave faces.csv as a kill at the worst moment would: the rows of an image that are written
    but not yet journaled (taken from the reference run, same input paths), then a partial line."""
    done = set((out / ".annotate-done-pts.log").read_text().splitlines())
    todo = [line for line in index_lines(reference)[1:] if next(csv.reader([line]))[KEY] not in done]
    assert len(todo) >= 2
    with open(out / "faces.csv", "a") as f:
        f.write(todo[0] + "\n" + todo[1][:len(todo[1]) // 2])


def test_ctrl_c_stops_with_a_summary(photos, tmp_path):
    folder = many_photos(photos, tmp_path, copies=25)  # 100 images: the run is still going when signalled
    result = start_and_stop(folder, tmp_path / "out", signal.SIGINT, after=2)
    assert result.returncode == 130
    assert "interrupted:" in result.stderr and "rerun the same command to resume" in result.stderr


def test_ctrl_c_inside_a_progress_bar_constructor_exits_without_a_traceback():
    # The interrupt can land while tqdm builds a bar (train adapt starts one per epoch); the half-built bar
    # failed in its __del__ on the way out, printing a traceback after the one-line message.
    code = """if True:
        import tqdm
        from annotator.cli import exit_interrupted
        def interrupt(*args, **kwargs):
            raise KeyboardInterrupt
        tqdm.tqdm._get_free_pos = staticmethod(interrupt)
        try:
            tqdm.tqdm(range(3))
        except KeyboardInterrupt:
            exit_interrupted("interrupted: nothing written")
    """
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130
    assert result.stderr.strip() == "interrupted: nothing written"


def test_ctrl_c_in_train_fit_keeps_the_finished_epochs_and_the_rerun_ends_as_an_uninterrupted_run(photos, tmp_path):
    cache = tmp_path / "cache.npz"
    annotate("train", "prepare", photos, "--out", cache, "--size", "32", "-j", "1")
    fit = ["train", "fit", cache, "--epochs", "20", "--batch", "2", "--width", "4", "--out"]
    run = tmp_path / "run"
    proc = start_annotate(*fit, run)
    deadline = time.time() + 120
    while not (run / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    result = finish(proc)
    assert result.returncode == 130 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (f"interrupted: {run / 'last.pt'} holds the finished epochs; "
                                              "rerun the same command to resume")
    assert 0 < len(torch.load(run / "last.pt", weights_only=True)["meta"]["history"]) < 20

    straight = tmp_path / "straight"
    annotate(*fit, run)
    annotate(*fit, straight)
    resumed, straight = (torch.load(r / "last.pt", weights_only=True)["state_dict"] for r in (run, straight))
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == list(range(1, 21))

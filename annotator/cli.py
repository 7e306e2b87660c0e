"""Command line: ``annotate PATH... --out DIR`` and ``annotate train ...``."""
from __future__ import annotations

import importlib
import os
import sys
from collections import Counter
from pathlib import Path
from typing import NoReturn

import click

from .export import FORMATS
from .images import DEFAULT_MAX_PIXELS


TRAIN_MODULE = "annotator.training.cli"  # imported only when ``annotate train`` is used (it needs torch)


class AnnotateGroup(click.Group):
    """``annotate PATH... --out DIR`` runs the hidden ``run`` command; ``annotate train ...`` trains.

    The help screen is the ``run`` command's, followed by the list of commands.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not _names_command(args):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return ["run", "review", "export", "train"]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "train":
            return importlib.import_module(TRAIN_MODULE).train
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            if e.ctx is not None and e.ctx.command is run_command:  # one line, naming no hidden command
                e.message, e.ctx = f"{e.message} (see '{ctx.command_path} --help')", None
            raise

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "PATH... --out DIR [OPTIONS]")
        for line in ("review DIR --worst N --out SHEET | --serve", "export DIR --to coco|dlib-xml|300w --out FILE",
                     "train prepare|fit|adapt|calibrate|evaluate|export ..."):
            formatter.write_usage(ctx.command_path, line, prefix="       ")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        run_ctx = click.Context(run_command, info_name=ctx.info_name, parent=ctx)
        own = [p for p in run_command.get_params(run_ctx) if isinstance(p, click.Option) and "--help" not in p.opts]
        params = own + self.get_params(ctx)
        with formatter.section("Options"):
            formatter.write_dl([r for p in params if (r := p.get_help_record(run_ctx))])
        self.format_commands(ctx, formatter)


def _names_command(args: list[str]) -> bool:
    """Whether ``args`` start with a command or a group option rather than the paths to annotate.

    A path that exists is annotated even when it is named like a command (a folder called ``train``,
    ``review``, ``export`` or ``run``), unless the command's own arguments follow it (``annotate train fit ...``,
    ``annotate review RUN_FOLDER ...``, ``annotate export RUN_FOLDER ...``).
    """
    first, rest = args[0], args[1:]
    if first in ("-h", "--help", "--version"):
        return True
    if first not in ("run", "review", "export", "train"):
        return False
    if not os.path.exists(first) or not rest or rest[0] in ("-h", "--help"):
        return True
    if first == "train":
        return rest[0] in ("prepare", "fit", "evaluate", "calibrate", "export", "adapt")
    return first in ("review", "export") and os.path.isdir(rest[0])


def check_jobs(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """A -j value joblib can use: N >= 1 processes, or -N for all cores but N - 1."""
    if value >= 1 or value == -1:
        return value
    from joblib import cpu_count
    if value == 0 or value < -cpu_count():
        raise click.BadParameter(f"{value}: use N >= 1 processes, or -1 (all {cpu_count()} cores) "
                                 f"down to -{cpu_count()} (one process)")
    return value


JOBS_HELP = "Worker processes; negative: all cores but |N| - 1 (-1: all cores, -2: all but one)."


def exit_interrupted(message: str) -> NoReturn:
    """Say ``message`` on stderr and exit with 130, as a shell does after Ctrl-C. What the interrupt caught
    half-built (a progress bar inside its constructor) is collected on the way out without a traceback."""
    click.echo(message, err=True)
    sys.unraisablehook = lambda _: None
    sys.exit(130)


@click.group(cls=AnnotateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="face-annotator")
def main() -> None:
    """Find faces in PATHs (images or folders, walked recursively) and write their 68 iBUG 300-W
    landmarks under --out: a .pts file per face (1-based) or a .json file per image (0-based).

    \b
      annotate ./images --out ./pts
      annotate ./images --out ./json --format json -j 8
      annotate export ./pts --to coco --out faces.json   # for training tools
      annotate train --help        # prepare data, train, evaluate against dlib, export
    """


@main.command("run", hidden=True)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder; the input tree is mirrored under it.")
@click.option("--format", "fmt", type=click.Choice(["pts", "json"]), default="pts", show_default=True,
              help="pts: one 1-based .pts per face; json: one 0-based .json per image.")
@click.option("-j", "--jobs", type=int, default=-1, show_default=True, callback=check_jobs, help=JOBS_HELP)
@click.option("--min-face", type=click.IntRange(10), default=None,
              help="Smallest face to find (box side, px of the photo); sets the detection scale. "
                   "Default: 40 px, or 1/25 of the photo's shorter side if larger.")
@click.option("--upsample", type=click.IntRange(0, 4), default=None,
              help="Scan the whole photo with this dlib upsampling instead (1: the default before "
                   "--min-face; finds faces from 80/2^N px).")
@click.option("--max-side", type=click.IntRange(16), default=None,
              help="Detect on a copy shrunk to at most this longest side (alone: with upsample 1).")
@click.option("--max-faces", type=click.IntRange(1), default=None, help="Keep the N best faces per image.")
@click.option("--detector", type=click.Choice(["cnn", "hog"]), default="cnn", show_default=True,
              help="dlib's CNN face detector (finds turned and tilted faces too; run by torch), or dlib's HOG "
                   "frontal face detector (about 5x faster, misses more faces; see README for figures).")
@click.option("--orientation", type=click.Choice(["any", "upright"]), default="any", show_default=True,
              help="any: also look for faces lying sideways or upside down (the photo turned by 90, 180 and 270 "
                   "degrees: about 4x the detection time); upright: faces within about "
                   "60 degrees of upright only.")
@click.option("--min-score", type=float, default=None,
              help="Drop detections scoring below this (the detector's score; default 0 for both detectors; "
                   "see README for figures).")
@click.option("--landmarker", type=click.Choice(["network", "dlib"]), default="network", show_default=True,
              help="Our packaged network, or dlib's shape_predictor_68_face_landmarks.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Network weights to use instead of the packaged ones.")
@click.option("--flip/--no-flip", default=None,
              help="Average the network's passes on the face and its mirror image (default for the packaged "
                   "weights), or write the unmirrored pass; the mirrored pass runs either way, for expected_error.")
@click.option("--preview", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write a JPEG per image with boxes and points drawn, under this folder.")
@click.option("--overwrite", is_flag=True,
              help="Redo images already done by an earlier run into --out (not those with a face a person checked).")
@click.option("--overwrite-checked", is_flag=True,
              help="With --overwrite: also redo images with a face a person checked (annotate review --serve).")
@click.option("--photos-moved", is_flag=True,
              help="The photos moved since an earlier run into --out: an image whose earlier path is gone is the "
                   "same photo at its new path (kept as it was annotated and checked; its rows point here).")
@click.option("--device", default="cpu", show_default=True,
              help="Where torch runs the network (and the CNN detector): cpu, cuda, cuda:1, ...")
@click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Refuse images with more pixels than this (decompression bombs).")
@click.option("--backend", type=click.Choice(["loky", "dask"]), default="loky", show_default=True,
              help="joblib backend; dask runs on the cluster at --scheduler.")
@click.option("--scheduler", default=None, help="dask.distributed scheduler address (with --backend dask).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def run_command(paths, out, fmt, jobs, min_face, upsample, max_side, max_faces, detector, orientation, min_score,
                landmarker,
                weights, flip, preview, overwrite, overwrite_checked, photos_moved, device, max_pixels, backend,
                scheduler, quiet) -> None:
    """Find faces in PATHS (images or folders) and write their 68 landmarks under --out."""
    from .lock import OutputBusy, lock_output
    from .run import Options, check_writable, threads_per_worker

    if min_face is not None and upsample is not None:
        raise click.UsageError("--min-face chooses the upsampling itself: give --min-face or --upsample")
    if overwrite_checked and not overwrite:
        raise click.UsageError("--overwrite-checked goes with --overwrite (a rerun never redoes a checked face)")
    outputs = [folder for folder in (out, preview) if folder]
    _check_outputs_apart(paths, out, preview)
    for folder in outputs:
        try:
            check_writable(folder)
        except OSError as e:
            raise click.ClickException(str(e)) from None
    opts = Options(out=out, format=fmt, upsample=upsample, max_side=max_side, min_face=min_face,
                   max_faces=max_faces, min_score=min_score, detector=detector, orientation=orientation,
                   device=device,
                   threads=threads_per_worker(jobs, backend),
                   landmarker=landmarker, weights=weights, flip=flip, preview=preview, max_pixels=max_pixels)
    try:
        with lock_output(out):
            _annotate(paths, outputs, opts, jobs, backend, scheduler, overwrite, quiet, overwrite_checked,
                      photos_moved)
    except OutputBusy as e:
        raise click.ClickException(str(e)) from None


def _check_outputs_apart(paths: tuple[Path, ...], out: Path, preview: Path | None) -> None:
    """Refuse an output folder that is an input folder: it is never walked, so its photos would be skipped."""
    folders = {p.resolve(): p for p in paths if p.is_dir()}
    for option, folder, example in (("--out", out, "landmarks"), ("--preview", preview, "preview")):
        if folder is not None and folder.resolve() in folders:
            raise click.UsageError(f"{option} {folder} is the input folder {folders[folder.resolve()]}: an output "
                                   f"folder is never read as input, so its photos would be skipped; give another "
                                   f"folder, such as {folder / example}")


def _annotate(paths, outputs, opts, jobs, backend, scheduler, overwrite, quiet, overwrite_checked,
              photos_moved) -> None:
    """Check the landmarker once, run with a progress bar, print the summary, exit with the status."""
    from tqdm import tqdm

    from .discover import walk
    from .run import FAILURE_LOG, OutputStopped, Summary, count, load_landmarker, run

    try:  # fail once, here, rather than on every image
        load_landmarker(opts, jobs, backend)
    except Exception as e:
        source = f" from {opts.weights}" if opts.weights and opts.landmarker == "network" else ""
        where = f" on {opts.device}" if opts.device != "cpu" else ""
        raise click.ClickException(f"cannot load the {opts.landmarker} landmarker{source} and the {opts.detector} "
                                   f"detector{where}: {type(e).__name__}: {e}") from None
    bar = tqdm(unit=" img", disable=quiet, file=sys.stderr, dynamic_ncols=True)

    def on_result(r, summary):
        if r.error:
            bar.write(f"error: {r.key}: {r.error}", file=sys.stderr)
        bar.set_postfix_str(f"{summary.faces} faces, {summary.failed} failed", refresh=False)
        bar.update()

    def on_notice(message):
        bar.write(f"warning: {message}", file=sys.stderr)

    client = _dask_client(scheduler) if backend == "dask" else None
    summary, unread = Summary(), Counter()
    try:
        run(walk(paths, exclude=outputs, unread=unread), opts, jobs, backend, overwrite, on_result, summary,
            on_notice, overwrite_checked, photos_moved)
    except OutputStopped as e:
        bar.close()
        click.echo(f"error: {e}\nstopped: {summary.line()}; every file written is whole: make room "
                   f"(or make {opts.out} writable) and rerun the same command to resume", err=True)
        sys.exit(1)
    except OSError as e:
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        bar.close()
        exit_interrupted(f"interrupted: {summary.line()}; rerun the same command to resume")
    finally:
        bar.close()
        if client is not None:
            client.close()
    click.echo(summary.line(), err=True)
    if unread:
        click.echo(_unread_note(unread), err=True)
    if opts.min_face is None and opts.upsample is None and opts.max_side is None:
        click.echo(_default_scan_note(), err=True)
    if summary.failed:
        click.echo(f"{count(summary.failed, 'image')} failed; see {opts.out / FAILURE_LOG}", err=True)
        sys.exit(1)


def _unread_note(unread: Counter) -> str:
    """The closing line on photos in formats annotate does not decode (``discover.walk``'s count)."""
    from .discover import PAIRED
    from .run import count
    unread = Counter(unread)  # the caller's count stays as walk left it
    paired = unread.pop(PAIRED, 0)
    if not unread:
        return (f"not read: {count(paired, 'photo')} in formats annotate does not decode, each with a photo of "
                "the same name beside it, which was read (a camera's RAW+JPEG pair)")
    kinds = ", ".join(f"{n} {suffix}" for suffix, n in unread.most_common())
    more = (f"; {paired} more {'has' if paired == 1 else 'have'} a photo of the same name beside "
            f"{'it' if paired == 1 else 'them'}, which was read") if paired else ""
    return (f"not read: {count(sum(unread.values()), 'photo')} in formats annotate does not decode ({kinds}); "
            f"convert them to JPEG, PNG or TIFF{more}")


def _default_scan_note() -> str:
    from .detectors import DEFAULT_MIN_FACE, DEFAULT_MIN_FACE_SHARE
    return (f"not looked for: faces under {DEFAULT_MIN_FACE} px or under 1/{DEFAULT_MIN_FACE_SHARE} of a "
            "photo's shorter side; --min-face PX finds smaller ones")


def _dask_client(address: str | None):
    try:
        from dask.distributed import Client
    except ImportError:
        raise click.ClickException("--backend dask needs: pip install 'face-annotator[dask]'") from None
    return Client(address) if address else Client(processes=True)


@main.command("review")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--worst", type=click.IntRange(1), default=None, help="The N faces with the highest expected error.")
@click.option("--best", type=click.IntRange(1), default=None, help="The N faces with the lowest (a sanity check).")
@click.option("--out", "-o", "sheet", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Contact sheet (.jpg or .png); several pages are NAME-1.jpg, NAME-2.jpg, ...")
@click.option("--per-page", type=click.IntRange(1), default=None, help="Faces per sheet (default 30: 5 rows of 6).")
@click.option("--list", "as_list", is_flag=True,
              help="Print the faces, one per line: expected error, output file, input image, box, checked "
                   "(tab-separated).")
@click.option("--checked", type=click.Choice(["skip", "include", "only"]), default="skip", show_default=True,
              help="Sheets and lists: leave out the faces a person checked (--serve), include them, or take only them.")
@click.option("--serve", is_flag=True,
              help="Check and fix the faces (all, or the --worst N) in a local web page; prints its address.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="With --serve: the port to listen on (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="With --serve: the address to listen on (another than 127.0.0.1 lets other machines in, "
                   "with the token).")
def review_command(folder, worst, best, sheet, per_page, as_list, checked, serve, port, host) -> None:
    """Show the faces of a run into FOLDER ranked by expected error (worst first with --worst), or check and
    fix them in a web page (--serve)."""
    from .review import ReviewError, listing, ranked_faces, write_sheets

    if serve:
        return _serve(folder, worst, best or sheet or as_list, host, port)
    if (worst is None) == (best is None) or not (sheet or as_list):
        raise click.UsageError("give one of --worst N or --best N, and --out SHEET and/or --list (or --serve)")
    try:
        rows = ranked_faces(folder, worst or best, worst=worst is not None, checked=checked)
        if as_list:
            click.echo(listing(folder, rows), nl=False)
        for path in write_sheets(folder, rows, sheet, per_page) if sheet else []:
            click.echo(f"wrote {path}", err=True)
    except ReviewError as e:
        raise click.ClickException(str(e)) from None


@main.command("export")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--to", "to", required=True, type=click.Choice(list(FORMATS)),
              help="coco: COCO keypoints JSON (pycocotools, MMPose); dlib-xml: imglab XML "
                   "(dlib.train_shape_predictor); 300w: a folder of photos with a .pts each (menpo, train prepare).")
@click.option("--out", "-o", "dest", required=True, type=click.Path(path_type=Path),
              help="File to write (a folder for 300w); with --split, its -train and -test variants.")
@click.option("--checked-only", is_flag=True,
              help="Only faces a person accepted or moved (faces marked not a face or unusable are never exported).")
@click.option("--max-error", type=click.FloatRange(0), default=None,
              help="Leave out unchecked faces whose expected error is above this, or unknown.")
@click.option("--paths", type=click.Choice(["relative", "absolute"]), default="relative", show_default=True,
              help="Photo paths relative to the written file's folder, or absolute.")
@click.option("--split", "test_share", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Write OUT-train and OUT-test, about this share of the photos in test (a photo's faces together).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --split (same seed, same split).")
@click.option("--from", "run_format", type=click.Choice(["pts", "json"]), default=None,
              help="The run to export when FOLDER holds a pts and a json run.")
def export_command(folder, to, dest, checked_only, max_error, paths, test_share, seed, run_format) -> None:
    """Write the faces of a run into FOLDER for a training tool (COCO, dlib XML, 300-W folder).

    Not to be confused with 'annotate train export', which writes network weights.
    """
    from .export import ExportError, Selection, export, left_out, photo_count
    from .run import count

    selection = Selection(checked_only=checked_only, max_error=max_error)
    try:
        parts, skipped = export(folder, to, dest, selection, paths == "absolute", test_share, seed, run_format)
    except ExportError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:  # the output cannot be written
        raise click.ClickException(f"{e.filename or dest}: {e.strerror or e}") from None
    for path, faces in parts.items():
        click.echo(f"wrote {path}: {count(len(faces), 'face')} of {count(photo_count(faces), 'photo')}", err=True)
    if skipped:
        click.echo(f"left out {count(sum(skipped.values()), 'face')}: {left_out(skipped)}", err=True)


def _serve(folder: Path, worst: int | None, other: object, host: str, port: int) -> None:
    """``annotate review FOLDER --serve``: one line on stderr for any reason it cannot start."""
    from .lock import OutputBusy
    from .review import ReviewError
    from .review_server.server import serve

    if other:
        raise click.UsageError("--serve shows the faces worst first: give --worst N or nothing, "
                               "without --best, --out or --list")
    try:
        serve(folder, worst, host, port)
    except (OutputBusy, ReviewError, OSError) as e:
        raise click.ClickException(str(e)) from None

"""Batch 68-point face landmark annotation: dlib detection, our network, 300-W output."""
from pathlib import Path as _Path

# The training commands ship as ``annotator.training`` (setup.cfg maps the folder); in a source
# checkout that folder is ``training/`` beside this package, so the checkout root is searched too.
_CHECKOUT = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "training").is_dir() and (_CHECKOUT / "setup.cfg").is_file():
    __path__.append(str(_CHECKOUT))

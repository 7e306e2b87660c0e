"""The review page's refit (``POST /api/faces/<id>/refit``): the network's points from the points a person
placed, computed by :func:`annotator.refit.refit` on the face's photo. Nothing is saved: the page applies
the answer as one edit. The network is loaded on the first refit, once per server."""
from __future__ import annotations

import threading

from . import photos
from .edits import POINTS, BadEdit, Faces, valid_points


class Refitter:
    """Refits the faces of ``faces`` with the packaged network, one at a time."""

    def __init__(self, faces: Faces):
        self.faces = faces
        self._network = None
        self._lock = threading.Lock()

    def refit(self, face: str, body: dict) -> dict:
        """``body``: the face's current ``points`` and the indices of those ``placed``; returns the face's
        id and its refitted points (the placed ones as sent)."""
        path = self.faces.row(face)["input_path"]
        points = valid_points(body.get("points"), photos.size(path), refused="not refitted")
        placed = body.get("placed")
        if not (isinstance(placed, list) and all(type(i) is int and 0 <= i < POINTS for i in placed)):
            raise BadEdit(f"not refitted: placed must be a list of point indices, 0 to {POINTS - 1}")
        from ..refit import refit  # torch: imported on the first refit, not when the server starts
        with self._lock:
            if self._network is None:
                from ..landmarks import NetworkLandmarker
                self._network = NetworkLandmarker()
            new = refit(self._network, photos.decoded(path), points, placed)
        return {"id": face, "points": new.tolist(), "placed": sorted(set(placed))}

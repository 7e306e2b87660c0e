"""``annotate review DIR --serve``: a local web page to check and fix a run's faces (server.py, edits.py,
photos.py, and the page in static/)."""

"""The dask backend against a real LocalCluster: same files as the local run."""
from __future__ import annotations

import pytest

from conftest import annotate, outputs, summary_line

distributed = pytest.importorskip("dask.distributed")


def test_dask_backend_matches_local_run(photos, tmp_path):
    annotate(photos, "--out", tmp_path / "local", "-j", "1")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        result = annotate(photos, "--out", tmp_path / "dask", "--backend", "dask",
                          "--scheduler", cluster.scheduler_address)
    assert summary_line(result.stderr).startswith("4 images: ")
    assert outputs(tmp_path / "dask") == outputs(tmp_path / "local") != {}

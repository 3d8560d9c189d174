"""The drift job's memory does not grow with the window (issue 14): measured with tracemalloc on the benchmark's
generated capture (scripts/bench_drift.py, the real job on a local fake S3), a window ten times larger."""

from __future__ import annotations

import tracemalloc
from datetime import timedelta

import pytest
from drift_engine import feature_drift
from drift_engine.job import AwsClients, run_drift_job
from drift_engine.window import Window

from scripts import bench_drift


def _peak_bytes(records: int, traced: bool = True) -> int:
    s3 = bench_drift.build(records, per_object=500, rows_per_record=1, shift=0.0, seed=5, pool=200)
    window = Window(bench_drift.HOUR, bench_drift.HOUR + timedelta(hours=1))
    clients = AwsClients(s3, bench_drift.Stub(), bench_drift.Stub())
    if not traced:
        return len(run_drift_job(bench_drift.settings(), window, clients))
    tracemalloc.start()
    try:
        summary = run_drift_job(bench_drift.settings(), window, clients)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary["rows_total"] == records
    return peak


def test_the_jobs_memory_does_not_grow_with_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feature_drift, "CHUNK_ROWS", 100, raising=False)  # smaller than both windows
    _peak_bytes(50, traced=False)  # first-use caches and lazy imports, not the window's cost
    small, large = _peak_bytes(200), _peak_bytes(1_500)
    # Holding every row (about 3 KB each as Python objects) adds ~4 MB for 1,300 more records; streaming holds
    # one chunk of rows and fixed-size reservoirs whatever the window's size.
    assert large - small < 2**20, (small, large)

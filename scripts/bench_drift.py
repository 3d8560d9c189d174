"""Benchmark the drift job's streaming path on a synthetic window (a benchmark, not a test).

    .venv/bin/python scripts/bench_drift.py [--records 10000000] [--per-object 20000] [--rows-per-record 1]

Generates SageMaker data-capture records on the fly (one JSON line per request, 30 features, shaped like the served
schema) in a local fake S3 that lists `--records / --per-object` objects under one hour's prefix and serves their
lines as the capture objects' bodies would, never holding a window in memory. The real job runs on it:
`run_drift_job` lists, reads line by line, decodes, streams into the per-version statistics, writes the reports
(to the fake S3), metrics and events (to stubs). Prints records/s, peak RSS (resource.getrusage) against the
Lambda's memory, and the time projected for 10 million records against its 15 minutes. S3 transfer time is not
included (no network here): at Lambda's typical 50-90 MB/s per GetObject stream, 10 M records of ~1.2 KB add ~2-4 min.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lambda_src" / "drift_monitor"))

from drift_engine.job import AwsClients, run_drift_job  # noqa: E402
from drift_engine.settings import Settings, parse_thresholds  # noqa: E402
from drift_engine.window import Window  # noqa: E402

LAMBDA_MEMORY_MB = 2048  # ml_constructs/drift_monitor.py: the drift function's memory_size
LAMBDA_TIMEOUT_S = 900  # ... and its timeout
TARGET_RECORDS = 10_000_000
FEATURES = 30
VERSION = "1.0.0"
ENDPOINT, VARIANT = "bench-ep", "AllTraffic"
HOUR = datetime(2026, 11, 25, 12, tzinfo=UTC)
CAPTURE_ROOT = f"datacapture/{ENDPOINT}/{VARIANT}/{HOUR:%Y/%m/%d/%H}/"
POOL = 4096  # distinct generated lines, cycled (generation stays out of the measured cost)


class Body:
    """A capture object's body: its lines, generated when read (botocore StreamingBody.iter_lines)."""

    def __init__(self, lines: Iterator[bytes] | None = None, data: bytes = b"") -> None:
        self._lines, self._data = lines, data

    def iter_lines(self) -> Iterator[bytes]:
        if self._lines is not None:
            yield from self._lines
        else:
            yield from self._data.splitlines()

    def read(self) -> bytes:
        return self._data if self._lines is None else b"\n".join(self._lines)


class Paginator:
    def __init__(self, s3: FakeS3) -> None:
        self.s3 = s3

    def paginate(self, *, Bucket: str, Prefix: str, Delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        keys = [key for key in self.s3.keys(Bucket) if key.startswith(Prefix)]
        if Delimiter:
            folders = sorted({Prefix + key[len(Prefix) :].split(Delimiter)[0] + Delimiter
                              for key in keys if Delimiter in key[len(Prefix) :]})  # fmt: skip
            contents = [key for key in keys if Delimiter not in key[len(Prefix) :]]
            yield {"Contents": [{"Key": k} for k in contents], "CommonPrefixes": [{"Prefix": p} for p in folders]}
            return
        for start in range(0, len(keys), 1000):  # ListObjectsV2 returns up to 1,000 keys a page
            yield {"Contents": [{"Key": key} for key in keys[start : start + 1000]]}


class FakeS3:
    """Stored objects (baselines, reports) plus `objects` generated capture objects of `per_object` lines each."""

    def __init__(self, lines: list[bytes], records: int, per_object: int) -> None:
        self.stored: dict[tuple[str, str], bytes] = {}
        self.lines, self.records, self.per_object = lines, records, per_object
        count = -(-records // per_object)
        self.capture_keys = [f"{CAPTURE_ROOT}{i // 60:02d}-{i % 60:02d}-000-{i:08x}.jsonl" for i in range(count)]

    def keys(self, bucket: str) -> list[str]:
        stored = sorted(key for (b, key) in self.stored if b == bucket)
        return sorted(stored + self.capture_keys) if bucket == "capture" else stored

    def get_paginator(self, name: str) -> Paginator:
        assert name == "list_objects_v2"
        return Paginator(self)

    def _capture_lines(self, index: int) -> Iterator[bytes]:
        first = index * self.per_object
        for number in range(first, min(first + self.per_object, self.records)):
            yield self.lines[number % len(self.lines)]

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        if Bucket == "capture" and Key.startswith(CAPTURE_ROOT):
            return {"Body": Body(self._capture_lines(self.capture_keys.index(Key)))}
        if (Bucket, Key) not in self.stored:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": Key}}, "GetObject")
        return {"Body": Body(data=self.stored[(Bucket, Key)])}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes | str, **_: Any) -> dict[str, Any]:
        self.stored[(Bucket, Key)] = Body.encode() if isinstance(Body, str) else Body
        return {}


class Stub:
    """CloudWatch and EventBridge: accept every call."""

    def __init__(self) -> None:
        self.calls = 0

    def put_metric_data(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        return {}

    def put_events(self, *, Entries: list[Any]) -> dict[str, Any]:
        self.calls += 1
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(i)} for i in range(len(Entries))]}


def capture_line(rng: np.random.Generator, rows: np.ndarray, event: int) -> bytes:
    probabilities = rng.uniform(0, 1, len(rows))
    predictions = [{"label": int(p >= 0.5), "probability": float(p), "model_version": VERSION} for p in probabilities]
    record = {
        "captureData": {
            "endpointInput": {"observedContentType": "application/json", "mode": "INPUT", "encoding": "JSON",
                              "data": json.dumps({"instances": rows.tolist()})},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "encoding": "JSON",
                               "data": json.dumps({"predictions": predictions})},
        },
        "eventMetadata": {"eventId": f"{event:032x}", "inferenceTime": "2026-11-25T12:00:00Z"},
        "eventVersion": "0",
    }  # fmt: skip
    return json.dumps(record, separators=(",", ":")).encode()


def build(records: int, per_object: int, rows_per_record: int, shift: float, seed: int, pool: int = POOL) -> FakeS3:
    """The fake S3 of a window of `records` capture records, cycling through `pool` distinct generated lines."""
    rng = np.random.default_rng(seed)
    means, scales = np.linspace(1.0, 30.0, FEATURES), np.linspace(0.1, 3.0, FEATURES)
    baseline = rng.normal(means, scales, size=(2000, FEATURES))
    lines = []
    for event in range(pool):
        rows = rng.normal(means, scales, size=(rows_per_record, FEATURES))
        rows[:, 0] += shift * scales[0]
        lines.append(capture_line(rng, rows, event))
    s3 = FakeS3(lines, records, per_object)
    names = [f"feature_{i:02d}" for i in range(FEATURES)]
    metadata = {
        "model_version": VERSION,
        "content_sha256": "bench",
        "feature_schema": {"features": [
            {"name": n, "minimum": float(baseline[:, i].min()), "maximum": float(baseline[:, i].max())}
            for i, n in enumerate(names)
        ]},
    }  # fmt: skip
    root = f"baselines/{VERSION}/"
    s3.put_object(Bucket="models", Key=root + "metadata.json", Body=json.dumps(metadata))
    csv = "\n".join(",".join(f"{v:.6f}" for v in row) for row in baseline) + "\n"
    s3.put_object(Bucket="models", Key=root + "baseline.csv", Body=csv)
    scores = "\n".join(f"{v:.6f}" for v in rng.uniform(0, 1, 2000)) + "\n"
    s3.put_object(Bucket="models", Key=root + "baseline_predictions.csv", Body=scores)
    return s3


def settings() -> Settings:
    return Settings(
        endpoint_name=ENDPOINT, variant_name=VARIANT, capture_bucket="capture", capture_prefix="datacapture",
        baseline_bucket="models", baseline_prefix="baselines/", report_bucket="reports",
        metrics_namespace="Bench/Drift", event_bus_name="default", window_hours=1, thresholds=parse_thresholds(None),
        ground_truth_bucket="capture", ground_truth_prefix=None, probability_of="positive_class",
    )  # fmt: skip


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=TARGET_RECORDS, help="capture records in the window")
    parser.add_argument("--per-object", type=int, default=20_000, help="records per capture object")
    parser.add_argument("--rows-per-record", type=int, default=1, help="instances per request")
    parser.add_argument("--shift", type=float, default=0.0, help="move feature_00 by this many sds (drift)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)

    s3 = build(args.records, args.per_object, args.rows_per_record, args.shift, args.seed)
    rss_before = peak_rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    summary = run_drift_job(settings(), Window(HOUR, HOUR + timedelta(hours=1)), AwsClients(s3, Stub(), Stub()))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    rate = args.records / elapsed
    projected = TARGET_RECORDS / rate
    report = json.loads(s3.stored[("reports", f"drift-reports/{ENDPOINT}/{VERSION}/{HOUR:%Y/%m/%d/%H}/report.json")])
    peak = peak_rss_mb()
    print(f"records            {args.records:,} in {len(s3.capture_keys):,} objects, "
          f"{args.rows_per_record} row(s) each")  # fmt: skip
    verdict = f"status {report['status']}, drifted {report['drifted_features']}"
    print(f"rows analysed      {summary['rows_total']:,}; {verdict}")
    print(
        f"elapsed            {elapsed:,.1f} s  ({rate:,.0f} records/s); CPU {cpu:,.1f} s "
        f"({args.records / cpu:,.0f} records per CPU second: the figure on a machine shared with other work)"
    )
    print(f"projected 10M      {projected / 60:,.1f} min  (Lambda timeout {LAMBDA_TIMEOUT_S / 60:.0f} min)")
    print(f"peak RSS           {peak:,.0f} MB  (before the run {rss_before:,.0f} MB; "
          f"Lambda memory {LAMBDA_MEMORY_MB} MB)")  # fmt: skip
    fits = peak < LAMBDA_MEMORY_MB and projected < LAMBDA_TIMEOUT_S
    print(
        f"target             {'met' if fits else 'NOT met'} (10M records within {LAMBDA_MEMORY_MB} MB and 15 min"
        f"{'' if args.records >= TARGET_RECORDS else '; projected from this run'})"
    )
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main())

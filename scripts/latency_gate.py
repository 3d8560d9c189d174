"""Short latency benchmark of a model package, served exactly as the image serves it, with p99 thresholds.

    python -m scripts.latency_gate --dist model_container/dist [--requests 2000 --concurrency 4]
        [--p99-ms MS --batch-rows N --batch-p99-ms MS] [--report reports/latency-gate.json]

(defaults: cdk.json's ml-platform.pipeline.latency_gate, the thresholds the pipeline uses)

Unpacks dist/model.tar.gz as SageMaker does, starts the Dockerfile's entry point with `serve` on
127.0.0.1, and sends single-row and batch requests from a thread pool. The request bodies come from the model
card (metadata.json), whatever the task: one value per feature in the card's order, inside each feature's
training range (its accepted range when the card gives none); a batch holds at most the card's
feature_schema.max_batch_rows rows (a larger --batch-rows is capped there, and the report says so).
Any non-200 answer fails the gate.
Exit codes: 0 passed, 1 a threshold was exceeded or a request failed, 2 usage, an unreadable card or the server
did not start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from model_container.card import CardError, ModelCard
from model_container.local_serving import ServerNotReady, entrypoint_command, free_port, wait_for_ping
from platform_config import CONTEXT_KEY
from platform_config.loader import build
from platform_config.settings import LatencyGate
from scripts.smoke_test import load_failures, run_load

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def served_model(dist: Path, workers: int, user: str, start_timeout_s: float = 60) -> Iterator[int]:
    """Serve dist/model.tar.gz on a free loopback port; yields the port and stops the server after."""
    root = Path(tempfile.mkdtemp(prefix="latency-gate-"))
    root.chmod(0o755)  # the server drops root privileges to `user`, who must read the model
    process: subprocess.Popen[bytes] | None = None
    try:
        model_dir, log = root / "model", root / "server.log"
        try:
            with tarfile.open(dist / "model.tar.gz") as archive:
                archive.extractall(model_dir, filter="data")
        except (OSError, tarfile.TarError) as error:
            raise ServerNotReady(f"cannot unpack {dist / 'model.tar.gz'}: {error} (build the model first)") from None
        port = free_port()
        environment = {
            **os.environ,
            "SM_MODEL_DIR": str(model_dir),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "MODEL_SERVER_HOST": "127.0.0.1",
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
            "MODEL_SERVER_USER": user,
        }
        with log.open("wb") as output:
            process = subprocess.Popen(
                entrypoint_command(), cwd=REPO, env=environment, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            wait_for_ping(port, start_timeout_s, process)
        except ServerNotReady as error:
            raise ServerNotReady(f"{error}\n{log.read_text()[-2000:]}") from None
        yield port
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(root, ignore_errors=True)


def request_rows(card: ModelCard, count: int) -> list[list[float]]:
    """`count` rows the card's contract accepts: each feature interpolated inside its training range (or, without
    one, its accepted minimum..maximum), so every value is in range and the rows differ."""
    rows = []
    for i in range(count):
        row = []
        for feature in card.feature_schema["features"]:
            low = feature.get("training_min", feature["minimum"])
            high = feature.get("training_max", feature["maximum"])
            value = round(low + (high - low) * (i + 1) / (count + 1), 6)
            row.append(min(max(value, feature["minimum"]), feature["maximum"]))
        rows.append(row)
    return rows


def measure(port: int, rows: list[list[float]], *, requests: int, concurrency: int, p99_ms: float) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/invocations"
    body = json.dumps({"instances": rows}).encode()
    run_load(url, "", body, requests=min(requests, 200), concurrency=concurrency, budget_s=60, timeout=10)  # warm-up
    load = run_load(url, "", body, requests=requests, concurrency=concurrency, budget_s=120, timeout=10)
    return {
        "rows_per_request": len(rows),
        **{k: v for k, v in asdict(load).items() if k != "latencies_ms"},
        "p50_ms": load.percentile(0.5),
        "p99_ms": load.percentile(0.99),
        "max_ms": load.percentile(1.0),
        "p99_threshold_ms": p99_ms,
        "requests_per_s": round(load.completed / load.elapsed_s, 1) if load.elapsed_s else None,
        "failures": load_failures(load, p99_ms, max_error_rate=0.0),
    }


def shipped_gate(cdk_json: Path = REPO / "cdk.json") -> LatencyGate:
    """The pipeline's latency gate as cdk.json configures it (ml-platform.pipeline.latency_gate): run by hand, the
    gate judges a build by the thresholds the pipeline will use."""
    key = f"{CONTEXT_KEY}.pipeline.latency_gate"
    raw = json.loads(cdk_json.read_text()).get("context", {}).get(CONTEXT_KEY, {}).get("pipeline", {})
    return build(LatencyGate, (raw or {}).get("latency_gate", {}), key)


def build_parser() -> argparse.ArgumentParser:
    gate = shipped_gate()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dist", type=Path, default=Path("model_container/dist"))
    parser.add_argument("--requests", type=int, default=gate.requests, help="requests per run (single row, then batch)")
    parser.add_argument("--concurrency", type=int, default=gate.concurrency)
    parser.add_argument("--p99-ms", type=float, default=gate.single_row_p99_ms, help="single-row p99 threshold")
    parser.add_argument("--batch-rows", type=int, default=gate.batch_rows)
    parser.add_argument("--batch-p99-ms", type=float, default=gate.batch_p99_ms, help="batch p99 threshold")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--user", default=os.environ.get("MODEL_SERVER_USER", "nobody"), help="serve as (if root)")
    parser.add_argument("--start-timeout-s", type=float, default=60.0, help="wait this long for /ping to answer 200")
    parser.add_argument("--report", type=Path, help="also write the JSON summary here")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.requests, args.concurrency, args.batch_rows, args.workers) < 1 or args.requests < args.concurrency:
        parser.error("--requests, --concurrency, --batch-rows and --workers must be >= 1; requests >= concurrency")
    if min(args.p99_ms, args.batch_p99_ms) <= 0:
        parser.error("--p99-ms and --batch-p99-ms must be > 0")
    try:
        card = ModelCard.load(args.dist / "metadata.json")
    except CardError as error:
        print(f"latency_gate: {error}", file=sys.stderr)
        return 2
    # The container refuses a batch over the card's cap (400 too_many_rows): the benchmark measures what it accepts.
    batch_rows = min(args.batch_rows, card.max_batch_rows)
    if batch_rows < args.batch_rows:
        print(
            f"latency_gate: --batch-rows {args.batch_rows} capped at the card's feature_schema.max_batch_rows "
            f"{card.max_batch_rows}",
            file=sys.stderr,
        )
    rows = request_rows(card, batch_rows)
    try:
        with served_model(args.dist, args.workers, args.user, args.start_timeout_s) as port:
            runs = {
                "single_row": measure(
                    port, rows[:1], requests=args.requests, concurrency=args.concurrency, p99_ms=args.p99_ms
                ),
                "batch": measure(
                    port, rows, requests=args.requests, concurrency=args.concurrency, p99_ms=args.batch_p99_ms
                ),
            }
    except ServerNotReady as error:
        print(f"latency_gate: {error}", file=sys.stderr)
        return 2
    failures = [f"{name}: {failure}" for name, run in runs.items() for failure in run.pop("failures")]
    summary = {
        "passed": not failures,
        "failures": failures,
        "model": {"name": card.name, "version": card.version, "task": card.task, "features": card.width},
        "batch_rows": {"requested": args.batch_rows, "max_batch_rows": card.max_batch_rows, "used": batch_rows},
        "workers": args.workers,
        **runs,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n")
    for failure in failures:
        print(f"latency_gate: FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Which HTTP layer: our server against uvicorn (httptools) and granian, all serving our app logic.

    python -m model_container.bench.layers [--duration 5] [--repeat 3]     # also run by bench.run

uvicorn and granian serve model_container/bench/asgi_app.py (our validation, batching, logging, metrics in an
ASGI app); ours is the container's server. Same model, same worker count (one per CPU), same request log sample
(MODEL_SERVER_REQUEST_LOG_SAMPLE, 0.01 as in staging/prod). Runs are interleaved (ours, uvicorn, granian, then
again in a rotated order) and repeated; the medians are reported with the load average at each run, since the
load generator shares the machine with the servers (and here with other work).
Decision rule (issue 15): move onto a well-kept server if it reaches >= 80 % of our single-row requests/s with
p99 <= 2 ms at 16 connections.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from model_container.bench.run import (
    HERE,
    REPO,
    WRK_SCRIPT,
    build_bench_model,
    run_wrk,
    start_ours,
    stop,
)
from model_container.local_serving import free_port, wait_for_ping

RESULTS = HERE / "results-layers.json"
LOG_SAMPLE = "0.01"
THRESHOLD_SHARE = 0.8
THRESHOLD_P99_MS = 2.0


def start_asgi(kind: str, model_dir: Path, workers: int, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    python = sys.executable
    target = "model_container.bench.asgi_app:app"
    if kind == "uvicorn":
        command = [python, "-m", "uvicorn", target, "--http", "httptools", "--loop", "uvloop", "--workers",
                   str(workers), "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--lifespan", "off",
                   "--log-level", "warning"]  # fmt: skip
    else:
        command = [python, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--workers", str(workers),
                   "--runtime-threads", "1", "--http", "1", "--no-ws", "--host", "127.0.0.1", "--port", str(port),
                   "--log-level", "warning", target]  # fmt: skip
    env = {**os.environ, "SM_MODEL_DIR": str(model_dir), "MODEL_SERVER_REQUEST_LOG_SAMPLE": LOG_SAMPLE}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return process, port


def compare(duration: int = 5, repeat: int = 3, connections: int = 16, threads: int = 2) -> dict[str, Any]:
    workers = len(os.sched_getaffinity(0))
    work = Path(tempfile.mkdtemp(prefix="layers-bench-"))
    work.chmod(0o755)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        model_dir, bodies = build_bench_model(work)
        script = work / "post.lua"
        script.write_text(WRK_SCRIPT)
        os.environ["MODEL_SERVER_REQUEST_LOG_SAMPLE"] = LOG_SAMPLE  # inherited by start_ours
        ours, ours_port = start_ours(model_dir, work / "ours.log", workers)
        uvicorn, uvicorn_port = start_asgi("uvicorn", model_dir, workers, work / "uvicorn.log")
        granian, granian_port = start_asgi("granian", model_dir, workers, work / "granian.log")
        processes += [ours, uvicorn, granian]
        ports = {"ours": ours_port, "uvicorn": uvicorn_port, "granian": granian_port}
        for port in ports.values():
            wait_for_ping(port)
        runs: dict[str, list[dict[str, Any]]] = {f"{s}_{b}": [] for s in ports for b in bodies}
        order = list(ports)
        for round_index in range(repeat):
            rotated = order[round_index % len(order) :] + order[: round_index % len(order)]
            for name, body in bodies.items():
                for server in rotated:
                    run_wrk(ports[server], body, script, 1, connections, threads)  # warm-up
                    result = run_wrk(ports[server], body, script, duration, connections, threads)
                    result["load_average_1m"] = round(os.getloadavg()[0], 2)
                    runs[f"{server}_{name}"].append(result)
        medians = {
            key: {
                metric: statistics.median(r[metric] for r in values)
                for metric in ("requests_per_s", "p50_ms", "p99_ms", "non_2xx", "socket_errors", "load_average_1m")
            }
            for key, values in runs.items()
        }
        ours_rps = medians["ours_1_row"]["requests_per_s"]
        verdict = {
            peer: {
                "share_of_ours_1_row": round(medians[f"{peer}_1_row"]["requests_per_s"] / ours_rps, 3),
                "p99_1_row_ms": medians[f"{peer}_1_row"]["p99_ms"],
                "meets_rule": medians[f"{peer}_1_row"]["requests_per_s"] >= THRESHOLD_SHARE * ours_rps
                and medians[f"{peer}_1_row"]["p99_ms"] <= THRESHOLD_P99_MS,
            }
            for peer in ("uvicorn", "granian")
        }
        return {
            "settings": {
                "duration_s": duration,
                "repeat": repeat,
                "connections": connections,
                "wrk_threads": threads,
                "workers_per_server": workers,
                "request_log_sample": LOG_SAMPLE,
                "cpus": workers,
            },
            "versions": _versions(),
            "runs": runs,
            "medians": medians,
            "verdict": verdict,
        }
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("uvicorn", "granian", "httptools", "uvloop"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "missing"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.time()
    results = compare(args.duration, args.repeat, args.connections)
    results["seconds"] = round(time.time() - started)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'run':<20}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'load 1m':>9}   (medians of {args.repeat})")
    for key, median in results["medians"].items():
        print(
            f"{key:<20}{median['requests_per_s']:>10.0f}{median['p50_ms']:>9.3f}{median['p99_ms']:>9.3f}"
            f"{median['load_average_1m']:>9.2f}"
        )
    print("verdict:", json.dumps(results["verdict"]))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark our model server against the Flask/gunicorn/scikit-learn stack on the same model and machine.

    python -m model_container.bench.run [--duration 10] [--connections 16]

Needs wrk (a C load generator, run in its own process): ``apt-get update && apt-get install -y wrk``.
Needs flask, gunicorn, gevent for the peer (see model_container/README.md for pins).
Loopback only. Prints a table and writes model_container/bench/results.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnxruntime as ort
import orjson

from model_container.bench import profile_request
from model_container.build_model import build as build_model
from model_container.build_model import train
from model_container.local_serving import ServerNotReady, entrypoint_command, free_port, wait_for_ping

LOG_FLUSH_S = 0.7  # workers flush buffered request logs every 0.5 s
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = HERE / "results.json"
# wrk reports exact percentiles (µs) and error counts through its Lua `done` hook.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BENCH_BODY"), "rb"):read("*a")
done = function(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,'
    .. '"non_2xx":%d,"socket_errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def start_ours(
    model_dir: Path, log: Path, workers: int, pythonpath: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Our server by the image's entry point; `pythonpath` goes first on its PYTHONPATH (bench/json_paths.py)."""
    port = free_port()
    env = {
        **os.environ,
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        "SM_MODEL_DIR": str(model_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "MODEL_SERVER_HOST": "127.0.0.1",
        "MODEL_SERVER_USER": os.environ.get("MODEL_SERVER_USER", "nobody"),
    }
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, os.environ.get("PYTHONPATH")) if p)
    command = entrypoint_command()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return process, port


def start_peer(pickle_path: Path, workers: int, worker_class: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "model_container.bench.peer_app:app",
    ]
    env = {**os.environ, "MODEL_PATH": str(pickle_path)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return process, port


def run_wrk(port: int, body_path: Path, script: Path, duration: int, connections: int, threads: int) -> dict[str, Any]:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}/invocations",
    ]
    output = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 30,
        env={**os.environ, "BENCH_BODY": str(body_path)},
    ).stdout
    line = next(x for x in output.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    seconds = raw["duration_us"] / 1e6
    return {
        "requests_per_s": round(raw["requests"] / seconds, 1),
        "requests": raw["requests"],
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "non_2xx": raw["non_2xx"],
        "socket_errors": raw["socket_errors"],
    }


def requests_per_worker(log: Path, offset: int) -> list[int]:
    """Request log lines per worker written after `offset`: how the kernel placed the connections."""
    with log.open("rb") as file:
        file.seek(offset)
        text = file.read()
    counts: dict[int, int] = {}
    for line in text.splitlines():
        if b'"event":"request"' in line:
            worker = int(orjson.loads(line)["worker"])
            counts[worker] = counts.get(worker, 0) + 1
    return [counts.get(i, 0) for i in range(max(counts, default=-1) + 1)]


def inference_floor(onnx_path: Path, pipeline: Any, rows: np.ndarray) -> dict[str, float]:
    """Median in-process time of one call: ONNX Runtime (1 thread) and scikit-learn predict_proba."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def median_us(call: Any, repeat: int) -> float:
        for _ in range(50):
            call()
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            call()
            samples.append(time.perf_counter() - started)
        return round(float(np.median(samples)) * 1e6, 2)

    one, hundred = rows[:1].astype(np.float32), rows[:100].astype(np.float32)
    return {
        "onnxruntime_1_row_us": median_us(lambda: session.run(None, {"input": one}), 5000),
        "onnxruntime_100_rows_us": median_us(lambda: session.run(None, {"input": hundred}), 2000),
        "sklearn_predict_proba_1_row_us": median_us(lambda: pipeline.predict_proba(rows[:1]), 1000),
        "sklearn_predict_proba_100_rows_us": median_us(lambda: pipeline.predict_proba(rows[:100]), 500),
    }


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def cpu_idle_percent(seconds: float = 1.0) -> float:
    """Share of the machine idle over a short sample: the figures only compare on a quiet machine."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    idle_before, total_before = sample()
    time.sleep(seconds)
    idle_after, total_after = sample()
    return round(100 * (idle_after - idle_before) / max(1, total_after - total_before), 1)


def build_bench_model(work: Path) -> tuple[Path, dict[str, Path]]:
    """Build the model into `work`, unpack it as SageMaker does, and write the 1-row and 100-row bodies."""
    build_model(work / "dist", contract_dir=work / "contract", commit="bench")
    model_dir = work / "model"
    with tarfile.open(work / "dist" / "model.tar.gz") as archive:
        archive.extractall(model_dir, filter="data")
    rows = np.loadtxt(work / "dist" / "holdout.csv", delimiter=",")[:, 1:]
    bodies = {}
    for name, count in (("1_row", 1), ("100_rows", 100)):
        bodies[name] = work / f"{name}.json"
        bodies[name].write_text(json.dumps({"instances": rows[:count].tolist()}))
    return model_dir, bodies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the model server against Flask/gunicorn/sklearn")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--peer-worker-class", default="gevent", choices=["gevent", "sync"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--layers",
        action=argparse.BooleanOptionalAction,
        default=importlib.util.find_spec("uvicorn") is not None and importlib.util.find_spec("granian") is not None,
        help="also compare our HTTP layer with uvicorn and granian serving our app (bench/layers.py)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is missing: install it with `apt-get update && apt-get install -y wrk`", file=sys.stderr)
        return 2
    workers = len(os.sched_getaffinity(0))
    work = Path(tempfile.mkdtemp(prefix="model-bench-"))
    work.chmod(0o755)  # our server drops to an unprivileged user who must read the model
    processes: list[subprocess.Popen[bytes]] = []
    try:
        model_dir, bodies = build_bench_model(work)
        pipeline = train(int(json.loads((model_dir / "metadata.json").read_text())["seed"]))[0]
        joblib.dump(pipeline, work / "model.joblib")
        rows = np.loadtxt(work / "dist" / "holdout.csv", delimiter=",")[:, 1:]
        script = work / "post.lua"
        script.write_text(WRK_SCRIPT)

        idle_before = cpu_idle_percent()
        ours, our_port = start_ours(model_dir, work / "ours.log", workers)
        processes.append(ours)
        # The load generator shares this machine's CPUs; a second instance with one worker fewer shows
        # the server's latency when it does not compete with wrk for a core.
        spare, spare_port = start_ours(model_dir, work / "ours-spare-core.log", max(1, workers - 1))
        processes.append(spare)
        peer, peer_port = start_peer(work / "model.joblib", workers, args.peer_worker_class, work / "peer.log")
        processes.append(peer)
        for port, log in ((spare_port, "ours-spare-core.log"), (our_port, "ours.log"), (peer_port, "peer.log")):
            try:
                wait_for_ping(port)
            except ServerNotReady:
                print((work / log).read_text(errors="replace")[-4000:], file=sys.stderr)
                raise

        results: dict[str, Any] = {
            "machine": {
                "cpus": workers,
                "platform": platform.platform(),
                "python": platform.python_version(),
                "load_average_before": [round(x, 2) for x in os.getloadavg()],
                "cpu_idle_percent_before": idle_before,
            },
            "settings": {
                "duration_s": args.duration,
                "connections": args.connections,
                "wrk_threads": args.threads,
                "workers_per_server": workers,
                "load_generator": "wrk",
            },
            "servers": {
                "ours": "uvloop + httptools prefork (SO_REUSEPORT), ONNX Runtime 1 thread/worker, validation + "
                "request logs + EMF metrics on",
                "peer": f"Flask behind gunicorn ({workers} {args.peer_worker_class} workers), joblib pickle, "
                "predict_proba per request,"
                " no validation",
            },
            "floor": inference_floor(work / "dist" / "model.onnx", pipeline, rows),
            "runs": {},
        }
        for name, body in bodies.items():
            for label, port in (("ours", our_port), ("peer", peer_port)):
                run_wrk(port, body, script, 2, args.connections, args.threads)  # warm-up
                time.sleep(LOG_FLUSH_S)  # the warm-up's request logs are written before the offset is taken
                offset = (work / "ours.log").stat().st_size
                result = run_wrk(port, body, script, args.duration, args.connections, args.threads)
                result["rows_per_s"] = round(result["requests_per_s"] * (1 if name == "1_row" else 100), 1)
                if label == "ours":
                    time.sleep(LOG_FLUSH_S)
                    result["requests_per_worker"] = requests_per_worker(work / "ours.log", offset)
                results["runs"][f"{label}_{name}"] = result
        run_wrk(spare_port, bodies["1_row"], script, 2, args.connections, 1)
        spare_run = run_wrk(spare_port, bodies["1_row"], script, args.duration, args.connections, 1)
        spare_run["rows_per_s"] = spare_run["requests_per_s"]
        spare_run["setup"] = f"ours with {max(1, workers - 1)} worker(s), wrk with 1 thread: a core each"
        results["runs"]["ours_1_row_spare_core"] = spare_run
        runs = results["runs"]
        results["ratios"] = {
            "requests_per_s_1_row": round(
                runs["ours_1_row"]["requests_per_s"] / runs["peer_1_row"]["requests_per_s"], 2
            ),
            "rows_per_s_100_rows": round(runs["ours_100_rows"]["rows_per_s"] / runs["peer_100_rows"]["rows_per_s"], 2),
            "p99_1_row_peer_over_ours": round(runs["peer_1_row"]["p99_ms"] / runs["ours_1_row"]["p99_ms"], 2),
            "requests_per_s_1_row_spare_core_vs_peer": round(
                runs["ours_1_row_spare_core"]["requests_per_s"] / runs["peer_1_row"]["requests_per_s"], 2
            ),
        }
        results["targets"] = {
            "ratio_1_row_at_least_10x": results["ratios"]["requests_per_s_1_row"] >= 10,
            "p99_1_row_at_most_2ms": runs["ours_1_row"]["p99_ms"] <= 2.0,
            "p99_1_row_at_most_2ms_spare_core": runs["ours_1_row_spare_core"]["p99_ms"] <= 2.0,
            "rows_per_s_100_rows_at_least_50k": runs["ours_100_rows"]["rows_per_s"] >= 50_000,
        }
        # Where a request's time goes in-process (bench/profile_request.py), on the same build.
        app = profile_request.load_app(work / "dist")
        results["request_profile"] = {
            name: {
                **profile_request.stages(app, bodies[name].read_bytes(), calls),
                **profile_request.whole(app, bodies[name].read_bytes(), calls),
            }
            for name, calls in (("1_row", 20000), ("100_rows", 2000))
        }
        if args.layers:  # the HTTP-layer comparison (bench/layers.py); needs uvicorn and granian
            from model_container.bench.layers import compare

            results["http_layers"] = compare(repeat=3, connections=args.connections)
        results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print_table(results)
        print(f"\nwritten to {args.out}")
        return 0
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


def print_table(results: dict[str, Any]) -> None:
    print(f"{'run':<16}{'req/s':>10}{'rows/s':>11}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for name, run in results["runs"].items():
        print(
            f"{name:<16}{run['requests_per_s']:>10.0f}{run['rows_per_s']:>11.0f}{run['p50_ms']:>9.3f}"
            f"{run['p90_ms']:>9.3f}{run['p99_ms']:>9.3f}{run['non_2xx']:>9}"
        )
    print(
        "ours, requests per worker:",
        {k: v["requests_per_worker"] for k, v in results["runs"].items() if "requests_per_worker" in v},
    )
    print("floor (median µs per call):", json.dumps(results["floor"]))
    print("request profile (best mean µs per call, in-process):", json.dumps(results["request_profile"]))
    print("ratios:", json.dumps(results["ratios"]))
    print("targets met:", json.dumps(results["targets"]))
    print("machine:", json.dumps(results["machine"]))


if __name__ == "__main__":
    sys.exit(main())

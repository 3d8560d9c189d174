"""100-row requests: our server with the simdjson bulk path, the same server on the orjson path, and the peer.

    python -m model_container.bench.json_paths [--rounds 3] [--duration 5] [--out FILE]

The orjson-path server is the same code with `simdjson` made unimportable (a shadowing module on its
PYTHONPATH), so server/validation.py takes the path every body took before issue 15. The three servers (two
workers each) run side by side and are driven in a rotating order, round after round, by wrk with the 100-row body
(16 connections, 2 threads): whatever else runs on the machine weighs on all three alike. Prints and writes the
medians of rows/s and the ratios to the peer.
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

import joblib

from model_container.bench.run import (
    LOG_FLUSH_S,
    WRK_SCRIPT,
    build_bench_model,
    run_wrk,
    start_ours,
    start_peer,
    stop,
)
from model_container.build_model import train
from model_container.local_serving import wait_for_ping

NO_SIMDJSON = 'raise ImportError("simdjson disabled for the orjson-path run (model_container/bench/json_paths.py)")\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bulk JSON path vs orjson path vs the peer, 100-row requests")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    workers = len(os.sched_getaffinity(0))
    work = Path(tempfile.mkdtemp(prefix="model-bench-paths-"))
    work.chmod(0o755)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        model_dir, bodies = build_bench_model(work)
        joblib.dump(train(int(json.loads((model_dir / "metadata.json").read_text())["seed"]))[0], work / "model.joblib")
        shadow = work / "no-simdjson"
        shadow.mkdir()
        (shadow / "simdjson.py").write_text(NO_SIMDJSON)
        shadow.chmod(0o755)
        script = work / "post.lua"
        script.write_text(WRK_SCRIPT)
        servers: dict[str, int] = {}
        for name, pythonpath in (("ours_bulk_path", None), ("ours_orjson_path", str(shadow))):
            process, servers[name] = start_ours(model_dir, work / f"{name}.log", workers, pythonpath)
            processes.append(process)
        peer, servers["peer"] = start_peer(work / "model.joblib", workers, "gevent", work / "peer.log")
        processes.append(peer)
        for port in servers.values():
            wait_for_ping(port)
        results: dict[str, Any] = {"load_average_before": [round(x, 2) for x in os.getloadavg()], "rounds": []}
        names = list(servers)
        for round_index in range(args.rounds):
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            runs = {}
            for name in order:
                run_wrk(servers[name], bodies["100_rows"], script, 1, args.connections, 2)  # warm-up
                time.sleep(LOG_FLUSH_S)
                run = run_wrk(servers[name], bodies["100_rows"], script, args.duration, args.connections, 2)
                runs[name] = {
                    "rows_per_s": run["requests_per_s"] * 100,
                    "p99_ms": run["p99_ms"],
                    "non_2xx": run["non_2xx"],
                }
            results["rounds"].append(runs)
            print(f"round {round_index + 1}: " + json.dumps(runs))
        medians = {n: statistics.median(r[n]["rows_per_s"] for r in results["rounds"]) for n in names}
        results["medians_rows_per_s"] = medians
        results["ratio_to_peer"] = {n: round(medians[n] / medians["peer"], 2) for n in names if n != "peer"}
        results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps({k: results[k] for k in ("medians_rows_per_s", "ratio_to_peer")}))
        if args.out:
            args.out.write_text(json.dumps(results, indent=2) + "\n")
        return 0
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Where a request's time goes inside the server, stage by stage, for the bench's 1-row and 100-row bodies.

    python -m model_container.bench.profile_request [--dist model_container/dist] [--out FILE]

Times, in-process and without the HTTP layer, each stage InferenceApp runs for a JSON /invocations request:
the opener count that bounds the parse, JSON decode, validation and array building, the range check, the ONNX
Runtime call, the prediction's rounding and the response encoding; then the whole prepare + complete, with the
array-form bulk path (simdjson, server/validation.py) and without it (orjson, as before issue 15), and cProfile's
top functions of the whole. Each figure is the best of 7 rounds of the mean over many calls (µs), so a busy
machine inflates them less than single calls; compare stages within one run.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from model_container.server import validation
from model_container.server.app import InferenceApp
from model_container.server.logs import LogWriter
from model_container.server.model import LoadedModel

REPO = Path(__file__).resolve().parents[2]
POST = (b"POST", b"/invocations", b"application/json", b"")


def best_mean_us(call: Callable[[], Any], calls: int, rounds: int = 7) -> float:
    for _ in range(max(20, calls // 20)):
        call()
    means = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        means.append((time.perf_counter() - started) / calls * 1e6)
    return round(min(means), 1)


def load_app(dist: Path) -> InferenceApp:
    model_dir = Path(tempfile.mkdtemp(prefix="profile-model-"))
    with tarfile.open(dist / "model.tar.gz") as archive:
        archive.extractall(model_dir, filter="data")
    app = InferenceApp(LogWriter(fd=os.open(os.devnull, os.O_WRONLY)))
    app.model = LoadedModel.load(model_dir)
    return app


def stages(app: InferenceApp, body: bytes, calls: int) -> dict[str, float]:
    model = app.model
    assert model is not None
    validator = model.validator
    matrix = validator.from_json(body)
    document = orjson.loads(body)
    flat64 = matrix.astype(np.float64)
    scores, labels = model.predict(matrix)
    run = model._run
    predictions = model.objects(scores, labels)
    figures = {
        "opener_count": best_mean_us(lambda: validation._openers(body), calls),
        "orjson_decode": best_mean_us(lambda: orjson.loads(body), calls),
        "orjson_path_validate_and_build_array": best_mean_us(lambda: validator.from_document(document), calls),
        "range_check_and_float32": best_mean_us(lambda: validator._checked(flat64), calls),
        "onnx_run": best_mean_us(lambda: run(model.output_names, {model.input_name: matrix}, None), calls),
        "predict_with_rounding": best_mean_us(lambda: model.predict(matrix), calls),
        "response_encode": best_mean_us(lambda: orjson.dumps({"predictions": predictions}), calls),
    }
    if validation.simdjson is not None and len(matrix) >= validation.BULK_PATH_ROWS:
        simdjson = validation.simdjson
        figures["simdjson_parse"] = best_mean_us(lambda: simdjson.Parser().parse(body) and None, calls)
        figures["bulk_path_from_json"] = best_mean_us(lambda: validator._bulk_array_rows(body, len(matrix)), calls)
    return figures


def whole(app: InferenceApp, body: bytes, calls: int) -> dict[str, float]:
    def request() -> Any:
        return app.handle(*POST, body, "r")

    figures = {"prepare_and_complete": best_mean_us(request, calls)}
    simdjson, validation.simdjson = validation.simdjson, None  # type: ignore[assignment]
    try:
        figures["prepare_and_complete_orjson_path"] = best_mean_us(request, calls)
    finally:
        validation.simdjson = simdjson
    return figures


def top_functions(app: InferenceApp, body: bytes, calls: int, limit: int = 12) -> str:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        app.handle(*POST, body, "r")
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(limit)
    return text.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the stages of a JSON /invocations request in-process")
    parser.add_argument("--dist", type=Path, default=REPO / "model_container" / "dist")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    app = load_app(args.dist)
    rows = np.loadtxt(args.dist / "holdout.csv", delimiter=",")[:, 1:]
    results: dict[str, Any] = {
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "simdjson": validation.simdjson is not None,
    }
    for name, count, calls in (("1_row", 1, 20000), ("100_rows", 100, 2000)):
        body = json.dumps({"instances": rows[:count].tolist()}).encode()
        results[name] = {"body_bytes": len(body), **stages(app, body, calls), **whole(app, body, calls)}
        print(f"{name} ({len(body)} bytes), µs per call:")
        for stage, figure in results[name].items():
            print(f"  {stage:<40}{figure:>10}")
    print("cProfile, 100 rows, bulk path:")
    print(top_functions(app, json.dumps({"instances": rows[:100].tolist()}).encode(), 2000))
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

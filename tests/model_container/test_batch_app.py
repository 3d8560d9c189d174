"""Batch Transform mode of the server (server/batch.py), in process: /execution-parameters, multi-record CSV and
JSON Lines bodies, Accept negotiation, errors that name the line, and the real-time contract left as it was.

The contract followed is the SageMaker Developer Guide's "Use Your Own Inference Code with Batch Transform"
(https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-batch-code.html): SAGEMAKER_BATCH=true in batch,
GET /execution-parameters answering {"MaxConcurrentTransforms", "BatchStrategy", "MaxPayloadInMB"}.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest

from model_container.server.app import InferenceApp, Response
from model_container.server.batch import BatchInferenceApp, execution_parameters, negotiate
from model_container.server.config import ServerConfig
from model_container.server.logs import LogWriter
from model_container.server.model import LoadedModel
from tests.model_container.task_packages import csv_cells, cycle_rows

CSV, JSONL, JSON = b"text/csv", b"application/jsonlines", b"application/json"
TWO_WORKERS = {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 1}


@pytest.fixture(scope="module")
def model(model_build) -> LoadedModel:
    return LoadedModel.load(model_build.model_dir)


@pytest.fixture
def batch(model: LoadedModel, logs: LogWriter) -> BatchInferenceApp:
    config = ServerConfig.from_env({"SAGEMAKER_BATCH": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    app = BatchInferenceApp(logs, execution_parameters(config))
    app.model = model
    return app


@pytest.fixture
def realtime(model: LoadedModel, logs: LogWriter) -> InferenceApp:
    app = InferenceApp(logs)
    app.model = model
    return app


def post(app: InferenceApp, body: bytes, content_type: bytes = CSV, accept: bytes = b"") -> Response:
    return app.handle(b"POST", b"/invocations", content_type, accept, body, "req-1")


def csv_lines(rows: list[list[float]]) -> bytes:
    return "".join(",".join(repr(v) for v in row) + "\n" for row in rows).encode()


def realtime_predictions(app: InferenceApp, rows: list[list[float]]) -> list[dict[str, Any]]:
    response = post(app, json.dumps({"instances": rows}).encode(), JSON)
    assert response.status == 200
    predictions: list[dict[str, Any]] = json.loads(response.body)["predictions"]
    return predictions


def error(response: Response) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(response.body)["error"]
    return body


# --- configuration and /execution-parameters -------------------------------------------------------------------
def test_batch_mode_comes_from_sagemaker_batch() -> None:
    assert ServerConfig.from_env({}).batch is False
    assert ServerConfig.from_env({"SAGEMAKER_BATCH": "true"}).batch is True
    assert ServerConfig.from_env({"SAGEMAKER_BATCH": "false"}).batch is False


def test_execution_parameters_follow_workers_and_the_body_limit() -> None:
    two = ServerConfig.from_env({"SAGEMAKER_BATCH": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    assert execution_parameters(two) == {
        "MaxConcurrentTransforms": 2,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 1,
    }
    eight = ServerConfig.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "8", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20"})
    assert execution_parameters(eight)["MaxConcurrentTransforms"] == 8
    # Never more than the container accepts: it answers 413 above SAGEMAKER_MAX_PAYLOAD_IN_MB.
    assert execution_parameters(eight)["MaxPayloadInMB"] <= 20


def test_execution_parameters_route_exists_only_in_batch_mode(batch: BatchInferenceApp, realtime: InferenceApp) -> None:
    answer = batch.handle(b"GET", b"/execution-parameters", b"", b"", b"", "r")
    assert (answer.status, answer.content_type) == (200, JSON)
    assert json.loads(answer.body) == {
        "MaxConcurrentTransforms": 2,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 1,
    }
    wrong_method = batch.handle(b"POST", b"/execution-parameters", b"", b"", b"", "r")
    assert (wrong_method.status, wrong_method.allow) == (405, b"GET")
    assert realtime.handle(b"GET", b"/execution-parameters", b"", b"", b"", "r").status == 404


# --- multi-record bodies ----------------------------------------------------------------------------------------
def test_csv_mini_batch_answers_one_csv_line_per_record_equal_to_realtime(
    batch: BatchInferenceApp, realtime: InferenceApp, holdout_rows
) -> None:
    rows = cycle_rows(holdout_rows, 50)
    response = post(batch, csv_lines(rows))
    assert (response.status, response.content_type, response.rows) == (200, CSV, 50)
    lines = response.body.decode().split("\n")
    assert lines[-1] == "" and len(lines) == 51  # newline-terminated, one line per record
    parsed = [line.split(",") for line in lines[:-1]]
    expected = [csv_cells(e) for e in realtime_predictions(realtime, rows)]
    # label (classifiers), the task's scores, model_version: the real-time answer's fields, in its order
    assert [[float(c) for c in cells[:-1]] + [cells[-1]] for cells in parsed] == [
        [float(c) for c in cells[:-1]] + [cells[-1]]
        for cells in expected  # type: ignore[arg-type]
    ]
    scores = [cell for cells in parsed for cell in cells[:-1] if "." in cell]  # probabilities or values
    assert scores and all(len(p.split(".")[1]) == 6 for p in scores)  # fixed 6 decimals, never 1e-06


def test_jsonlines_mini_batch_takes_arrays_and_objects(
    batch: BatchInferenceApp, realtime: InferenceApp, holdout_rows, feature_schema
) -> None:
    names = [f["name"] for f in feature_schema["features"]]
    rows = holdout_rows[:6]
    body = b"\r\n".join(
        json.dumps(row if i % 2 else dict(zip(names, row, strict=True))).encode() for i, row in enumerate(rows)
    )
    response = post(batch, body, JSONL)
    assert (response.status, response.content_type) == (200, JSONL)
    assert response.body.endswith(b"\n")
    assert [json.loads(line) for line in response.body.splitlines()] == realtime_predictions(realtime, rows)


def test_multi_record_bodies_have_no_realtime_row_cap(
    batch: BatchInferenceApp, realtime: InferenceApp, holdout_rows, feature_schema
) -> None:
    rows = cycle_rows(holdout_rows, feature_schema["max_batch_rows"] + 1)
    assert error(post(realtime, csv_lines(rows)))["code"] == "too_many_rows"
    response = post(batch, csv_lines(rows))
    assert response.status == 200 and response.body.count(b"\n") == len(rows)


@pytest.mark.parametrize(
    ("content_type", "accept", "answer"),
    [
        (CSV, b"", CSV),
        (CSV, b"*/*", CSV),
        (CSV, b"application/jsonlines", JSONL),
        (CSV, b"application/json", JSON),
        (JSONL, b"", JSONL),
        (JSONL, b"text/csv", CSV),
        (JSONL, b"application/*", JSONL),
        (JSON, b"", JSON),
        (JSON, b"text/*", CSV),
        (CSV, b"text/csv;q=0.2, application/jsonlines;q=0.9", JSONL),
        (CSV, b"text/html, */*;q=0.1", CSV),
        (CSV, b"text/html", None),
        (CSV, b"text/csv;q=0", None),
    ],
)
def test_accept_picks_the_answer_format(content_type: bytes, accept: bytes, answer: bytes | None) -> None:
    assert negotiate(accept, {CSV: CSV, JSONL: JSONL, JSON: JSON}[content_type]) == answer


def test_answer_format_follows_accept_over_http_semantics(batch: BatchInferenceApp, holdout_rows) -> None:
    body = csv_lines(holdout_rows[:3])
    as_json = post(batch, body, CSV, b"application/json")
    assert as_json.content_type == JSON and len(json.loads(as_json.body)["predictions"]) == 3
    assert post(batch, body, CSV, b"text/html").status == 406
    assert post(batch, b"<a/>", b"application/xml").status == 415


def test_json_requests_in_batch_mode_are_answered_as_in_real_time(
    batch: BatchInferenceApp, realtime: InferenceApp, holdout_rows
) -> None:
    body = json.dumps({"instances": holdout_rows[:4]}).encode()
    assert post(batch, body, JSON).body == post(realtime, body, JSON).body
    assert post(batch, b"{bad", JSON).body == post(realtime, b"{bad", JSON).body


def test_several_requests_share_one_model_call_and_keep_their_formats(batch: BatchInferenceApp, holdout_rows) -> None:
    """The transport batches requests of different formats into one complete() call (http.ServerState.flush)."""
    bodies = [(csv_lines(holdout_rows[:2]), CSV, b""), (csv_lines(holdout_rows[2:5]), CSV, b"application/jsonlines")]
    prepared = [batch.prepare(b"POST", b"/invocations", ct, a, b, f"r{i}") for i, (b, ct, a) in enumerate(bodies)]
    assert all(isinstance(p, np.ndarray) for p in prepared)
    first, second = batch.complete(prepared, ["r0", "r1"])  # type: ignore[arg-type]
    assert (first.content_type, first.body.count(b"\n")) == (CSV, 2)
    assert (second.content_type, len(second.body.splitlines())) == (JSONL, 3)


# --- errors name the line ---------------------------------------------------------------------------------------
def with_line(rows: list[list[float]], index: int, text: str) -> bytes:
    lines = csv_lines(rows).decode().splitlines()
    lines[index] = text
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(
    ("make_body", "content_type", "code", "line", "message"),
    [
        (
            lambda rows: with_line(rows, 2, "1,2,3"),
            CSV,
            "wrong_feature_count",
            3,
            "line 3 has 3 values, expected {width}",
        ),
        (lambda rows: with_line(rows, 1, "x" + csv_lines(rows[:1]).decode().strip()), CSV, "wrong_type", 2, "line 2 "),
        (lambda rows: with_line(rows, 3, ""), CSV, "empty_line", 4, "line 4 is empty"),
        (lambda rows: with_line(rows, 0, ",".join(["1e9"] * len(rows[0]))), CSV, "out_of_range", 1, "line 1 feature"),
        (
            lambda rows: b"\n".join(json.dumps(r).encode() for r in rows[:2]) + b"\n{oops",
            JSONL,
            "malformed_json",
            3,
            "",
        ),
        (lambda rows: json.dumps(rows[0]).encode() + b'\n[1, "2"]', JSONL, "wrong_feature_count", 2, "line 2 has 2"),
        (
            lambda rows: json.dumps(rows[0]).encode() + b"\n\n" + json.dumps(rows[0]).encode(),
            JSONL,
            "empty_line",
            2,
            "",
        ),
        # The first bad line is reported, even when a later line is not JSON at all.
        (lambda rows: b"[1, 2]\n{oops", JSONL, "wrong_feature_count", 1, "line 1 has 2 values"),
    ],
)
def test_a_bad_record_fails_the_request_with_its_line(
    batch: BatchInferenceApp, holdout_rows, make_body, content_type: bytes, code: str, line: int, message: str
) -> None:
    response = post(batch, make_body(holdout_rows[:5]), content_type)
    assert response.status == 400
    body = error(response)
    assert (body["code"], body["line"], body["row"]) == (code, line, line - 1)
    assert body["message"].startswith(message.format(width=batch.model.validator.width) or f"line {line} ")
    assert body["request_id"] == "req-1"


def test_whole_body_errors_name_no_line(batch: BatchInferenceApp) -> None:
    for content_type in (CSV, JSONL):
        body = error(post(batch, b"", content_type))
        assert body["code"] == "empty_batch" and "line" not in body


def test_model_failure_in_batch_mode_is_a_500_with_the_request_id(
    batch: BatchInferenceApp, model, holdout_rows
) -> None:
    class BrokenSession:
        def run(self, *args: object) -> None:
            raise RuntimeError("onnxruntime exploded")

    broken: Any = BrokenSession()
    batch.model = dataclasses.replace(model, session=broken)
    response = post(batch, csv_lines(holdout_rows[:2]))
    assert response.status == 500 and error(response)["request_id"] == "req-1"

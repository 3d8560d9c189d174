"""The running server over real HTTP: the SageMaker contract, error codes, logs and metrics."""

from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest

from model_container.card import BINARY, MULTICLASS, REGRESSION, ModelCard
from tests.model_container.task_packages import cycle_rows

# Starts real servers; one xdist worker shares the session server.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("model_server")]


def raw_exchange(port: int, payload: bytes, pause: float = 0.0, rest: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        if pause:
            time.sleep(pause)
        if rest:
            sock.sendall(rest)
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_ping_is_200_with_empty_body(server) -> None:
    status, _, body = server.request("GET", "/ping")
    assert (status, body) == (200, b"")


def test_json_arrays_objects_and_csv_agree(server, model_build, holdout_rows, feature_schema) -> None:
    names = [f["name"] for f in feature_schema["features"]]
    rows = holdout_rows[:20]
    csv = "".join(",".join(repr(v) for v in row) + "\n" for row in rows)
    status_a, arrays = server.invoke({"instances": rows})
    status_o, objects = server.invoke({"instances": [dict(zip(names, row, strict=True)) for row in rows]})
    status_c, from_csv = server.invoke(csv, "text/csv; charset=utf-8")
    assert status_a == status_o == status_c == 200
    assert arrays == objects == from_csv
    assert len(arrays["predictions"]) == 20  # type: ignore[index]
    first = arrays["predictions"][0]  # type: ignore[index]
    fields = {BINARY: ["label", "probability"], MULTICLASS: ["label", "probabilities"], REGRESSION: ["value"]}
    assert list(first) == [*fields[model_build.card.task], "model_version"]
    assert first["model_version"] == model_build.card.version


def test_predictions_match_holdout_labels(server, model_build, holdout_rows) -> None:
    """The served answers score the holdout as the card says: accuracy (classifiers) or RMSE (regression)."""
    truth = [float(line.split(",")[0]) for line in (model_build.dist / "holdout.csv").read_text().splitlines()]
    status, result = server.invoke({"instances": holdout_rows})
    assert status == 200
    metrics = model_build.metadata["holdout_metrics"]
    if model_build.card.task == REGRESSION:
        values = [p["value"] for p in result["predictions"]]  # type: ignore[index]
        rmse = (sum((v - t) ** 2 for v, t in zip(values, truth, strict=True)) / len(truth)) ** 0.5
        assert rmse == pytest.approx(metrics["rmse"], rel=0.01)
        return
    predicted = [p["label"] for p in result["predictions"]]  # type: ignore[index]
    accuracy = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)
    assert accuracy == pytest.approx(metrics["accuracy"], abs=0.01)


def test_large_batch(server, holdout_rows, model_build) -> None:
    cap = ModelCard.load(model_build.model_dir).max_batch_rows  # the largest batch the contract admits
    status, result = server.invoke({"instances": cycle_rows(holdout_rows, cap)})
    assert status == 200 and len(result["predictions"]) == cap  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("{}", "text/plain", 415, "unsupported_media_type"),
        ("{}", "application/x-npy", 415, "unsupported_media_type"),
        ("{not json", "application/json", 400, "malformed_json"),
        ('{"instances": [[1, 2]]}', "application/json", 400, "wrong_feature_count"),
        ("1,2,3\n", "text/csv", 400, "wrong_feature_count"),
    ],
)
def test_error_codes(server, body: str, content_type: str, status: int, code: str) -> None:
    got_status, result = server.invoke(body, content_type)
    assert got_status == status
    assert result["error"]["code"] == code and result["error"]["request_id"]  # type: ignore[index]


def test_error_names_row_and_field(server, model_build, holdout_rows) -> None:
    bad_row = list(holdout_rows[1])
    bad_row[-1] = model_build.card.feature_schema["features"][-1]["maximum"] * 2 + 1
    status, result = server.invoke({"instances": [holdout_rows[0], bad_row]})
    assert status == 400
    assert result["error"] | {"message": ""} == {  # type: ignore[index]
        "code": "out_of_range",
        "row": 1,
        "field": model_build.card.feature_names[-1],
        "message": "",
        "request_id": result["error"]["request_id"],
    }  # type: ignore[index]


def test_accept_negotiation_and_sagemaker_headers(server, holdout_rows) -> None:
    body = {"instances": holdout_rows[:1]}
    assert server.invoke(body, Accept="text/csv")[0] == 406
    for accept in ("*/*", "application/json", "application/json; charset=utf-8, text/csv;q=0.1"):
        assert server.invoke(body, Accept=accept)[0] == 200
    sagemaker_headers = {
        "X-Amzn-SageMaker-Custom-Attributes": "c=1",
        "X-Amzn-SageMaker-Inference-Id": "abc",
        "X-Amzn-SageMaker-Target-Model": "m.tar.gz",
        "X-Amzn-RequestId": "r",
    }
    assert server.invoke(body, **sagemaker_headers)[0] == 200


def test_routes_and_methods(server) -> None:
    assert server.request("GET", "/invocations")[0] == 405
    assert server.request("POST", "/ping")[0] == 405
    assert server.request("GET", "/nope")[0] == 404


def test_declared_oversize_body_is_refused_unread(server) -> None:
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 7000000\r\n\r\n"
    response = raw_exchange(server.port, head)  # no body is ever sent
    assert response.startswith(b"HTTP/1.1 413 ") and b"payload_too_large" in response


def test_chunked_oversize_body_is_refused(server) -> None:
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"1,2,3\n" * 100_000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(12)) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # server stops reading past the limit
            sock.sendall(head + body)
        response = sock.recv(65536)
    assert response.startswith(b"HTTP/1.1 413 ")


def test_endless_headers_are_refused(server) -> None:
    head = b"GET /ping HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: " + b"a" * 100_000
    response = raw_exchange(server.port, head)
    assert response.startswith(b"HTTP/1.1 431 ")


def test_malformed_http_is_400(server) -> None:
    assert raw_exchange(server.port, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_keep_alive_and_pipelining(server, holdout_rows) -> None:
    body = json.dumps({"instances": holdout_rows[:2]}).encode()
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    last = b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    response = raw_exchange(server.port, request * 3 + last)
    assert response.count(b"HTTP/1.1 200 OK") == 4
    assert response.count(b'"predictions"') == 3


def test_slow_body_times_out_with_408(server) -> None:
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 100\r\n\r\n1,2"
    response = raw_exchange(server.port, head)  # the server's receive timeout is 1 s here
    assert response.startswith(b"HTTP/1.1 408 ")


def test_request_log_and_emf_metrics(server, model_build, holdout_rows) -> None:
    status, _, _ = server.request(
        "POST", "/invocations", json.dumps({"instances": holdout_rows[:3]}), {"Content-Type": "application/json"}
    )
    assert status == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        requests = [r for r in server.events("request") if r.get("rows") == 3]
        metrics = server.events("metrics")
        if requests and metrics:
            break
        time.sleep(0.1)
    record = requests[-1]
    assert {"time", "request_id", "rows", "latency_ms", "status", "model_version", "worker"} <= set(record)
    assert record["model_version"] == model_build.card.version
    emf = metrics[-1]
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MlApi/ModelServer"
    assert emf["Requests"] >= 1 and "LatencyP99" in emf
    total_logged = len(server.events("request"))
    assert sum(m["Requests"] for m in metrics) <= total_logged  # aggregated, not one record per request
    assert len(metrics) < total_logged

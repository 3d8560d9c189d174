"""InferenceApp: routing, media types, content negotiation and model failures, without HTTP."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from model_container.server.app import InferenceApp, accepts_json, media_type
from model_container.server.logs import LogWriter
from model_container.server.model import LoadedModel, ModelLoadError


@pytest.fixture
def log_pipe():
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    yield LogWriter(fd=write_end), read_end
    os.close(read_end)
    os.close(write_end)


@pytest.fixture(scope="module")
def model(model_build) -> LoadedModel:
    return LoadedModel.load(model_build.model_dir)


@pytest.fixture(scope="module")
def binary_model(packages) -> LoadedModel:
    """The binary example, whatever cdk.json serves: the tests of BinaryModel's inlined hot path (`label`,
    `probability`) need a binary card; the other tasks' shapes are tests/model_container/test_tasks.py's."""
    return LoadedModel.load(packages("binary").model_dir)


@pytest.fixture(scope="module")
def binary_rows(packages) -> list[list[float]]:
    return packages("binary").rows


def csv_body(model: LoadedModel, rows: int = 1) -> bytes:
    row = ",".join(
        str((f["training_min"] + f["training_max"]) / 2) for f in model.metadata["feature_schema"]["features"]
    )
    return ((row + "\n") * rows).encode()


def test_media_type_and_accept_parsing() -> None:
    assert media_type(b"Text/CSV ; charset=utf-8") == "text/csv"
    assert media_type(b"") == ""
    for accept in (b"", b"*/*", b"application/json", b"text/html, application/*;q=0.5", b"application/json;q=1"):
        assert accepts_json(accept), accept
    for accept in (b"text/csv", b"application/json;q=0", b"text/html, */*;q=0", b"application/json;q=x"):
        assert not accepts_json(accept), accept


def test_prediction_shape(binary_model: LoadedModel, log_pipe) -> None:
    model = binary_model
    app = InferenceApp(log_pipe[0])
    app.model = model
    response = app.handle(b"POST", b"/invocations", b"text/csv", b"", csv_body(model, 3), "r1")
    assert response.status == 200 and response.rows == 3
    predictions = json.loads(response.body)["predictions"]
    assert len(predictions) == 3
    for prediction in predictions:
        assert set(prediction) == {"label", "probability", "model_version"}
        assert prediction["label"] in (0, 1) and 0 <= prediction["probability"] <= 1
        assert prediction["label"] == int(prediction["probability"] >= 0.5)
        assert prediction["model_version"] == model.card.version


def test_routing_and_readiness(model: LoadedModel, log_pipe) -> None:
    app = InferenceApp(log_pipe[0])
    assert app.handle(b"GET", b"/ping", b"", b"", b"", "r").status == 503
    assert app.handle(b"POST", b"/invocations", b"text/csv", b"", b"1", "r").status == 503
    app.model = model
    ping = app.handle(b"GET", b"/ping?x=1", b"", b"", b"", "r")
    assert (ping.status, ping.body) == (200, b"")
    assert app.handle(b"POST", b"/ping", b"", b"", b"", "r").allow == b"GET, HEAD"
    assert app.handle(b"GET", b"/invocations", b"", b"", b"", "r").status == 405
    assert app.handle(b"GET", b"/", b"", b"", b"", "r").status == 404
    assert app.handle(b"POST", b"/invocations", b"application/xml", b"", b"<a/>", "r").status == 415
    assert app.handle(b"POST", b"/invocations", b"", b"", b"{}", "r").status == 415
    assert app.handle(b"POST", b"/invocations", b"text/csv", b"text/csv", csv_body(model), "r").status == 406


def test_model_failure_is_a_500_with_request_id_and_logged_trace(model: LoadedModel, log_pipe) -> None:
    logs, read_end = log_pipe

    class BrokenSession:
        def run(self, *args: object) -> None:
            raise RuntimeError("onnxruntime exploded")

    app = InferenceApp(logs)
    broken: object = BrokenSession()
    app.model = dataclasses.replace(model, session=broken)
    response = app.handle(b"POST", b"/invocations", b"text/csv", b"", csv_body(model), "req-42")
    assert response.status == 500
    assert json.loads(response.body)["error"]["request_id"] == "req-42"
    logged = json.loads(os.read(read_end, 65536))
    assert logged["request_id"] == "req-42" and "onnxruntime exploded" in logged["traceback"]


def test_load_refuses_missing_or_tampered_model(model_build, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        LoadedModel.load(tmp_path)
    (tmp_path / "metadata.json").write_bytes((model_build.model_dir / "metadata.json").read_bytes())
    (tmp_path / "model.onnx").write_bytes((model_build.model_dir / "model.onnx").read_bytes() + b"x")
    with pytest.raises(ModelLoadError, match="sha256"):
        LoadedModel.load(tmp_path)


def test_predict_rounds_the_same_for_small_and_large_batches(binary_model: LoadedModel, binary_rows) -> None:
    model = binary_model
    rows = np.array(binary_rows[:40], dtype=np.float32)
    small = [p for start in range(0, 40, 4) for p in model.predict(rows[start : start + 4])[0]]
    large, labels = model.predict(rows)
    assert small == large and len(set(large)) > 10
    assert all(isinstance(p, float) and p == round(p, 6) for p in large)
    assert labels == [int(p >= 0.5) for p in large]
    _, raw = model.session.run(None, {model.input_name: rows})
    assert np.allclose(large, raw[:, 1], atol=1e-6)


def test_a_row_predicts_the_same_alone_and_in_any_batch(model: LoadedModel, holdout_rows) -> None:
    """The transport batches requests into one model call: no response may depend on its neighbours."""
    rng = np.random.default_rng(7)
    rows = (
        np.array(holdout_rows * 3, dtype=np.float32)
        * rng.uniform(0.9, 1.1, (len(holdout_rows) * 3, model.validator.width))
    ).astype(np.float32)
    # The graph's scores: a classifier's probabilities (its second output), a regressor's values (its only one).
    raw = model._run(model.output_names, {model.input_name: rows}, None)[-1]
    alone = [
        model._run(model.output_names, {model.input_name: rows[i : i + 2]}, None)[-1][0] for i in range(len(rows) - 1)
    ]
    assert np.array_equal(np.array(alone), raw[:-1])  # the property predict() relies on for two or more rows
    together, _ = model.predict(rows)
    assert [model.predict(rows[i : i + 1])[0][0] for i in range(len(rows))] == together
    for size in (2, 3, 5, 8, 9, 64):
        assert [
            p for start in range(0, len(rows), size) for p in model.predict(rows[start : start + size])[0]
        ] == together


def test_batched_requests_get_the_responses_they_would_get_alone(model: LoadedModel, log_pipe) -> None:
    app = InferenceApp(log_pipe[0])
    app.model = model
    features = model.metadata["feature_schema"]["features"]
    bodies = []
    for count in (1, 3, 1, 100, 2):
        rows = [
            [
                f["training_min"] + (f["training_max"] - f["training_min"]) * ((i * 7 + j) % 11) / 10
                for j, f in enumerate(features)
            ]
            for i in range(count)
        ]
        bodies.append(json.dumps({"instances": rows}).encode())
    alone = [app.handle(b"POST", b"/invocations", b"application/json", b"", body, "r").body for body in bodies]
    prepared = [app.prepare(b"POST", b"/invocations", b"application/json", b"", body, "r") for body in bodies]
    batched = app.complete(prepared, ["r"] * len(bodies))  # type: ignore[arg-type]
    assert [response.body for response in batched] == alone
    assert [response.rows for response in batched] == [1, 3, 1, 100, 2]


def test_a_failing_batch_is_retried_request_by_request(model: LoadedModel, log_pipe) -> None:
    class FailsOnThreeRows:  # and so on the batch of 1 + 3 + 4 rows
        def run(self, names: object, feed: dict[str, np.ndarray], options: object) -> object:
            if len(next(iter(feed.values()))) in (3, 8):
                raise RuntimeError("onnxruntime exploded")
            return model.session.run(names, feed)  # type: ignore[arg-type]

    app = InferenceApp(log_pipe[0])
    broken: object = FailsOnThreeRows()
    app.model = dataclasses.replace(model, session=broken)
    prepared = [app.prepare(b"POST", b"/invocations", b"text/csv", b"", csv_body(model, n), f"r{n}") for n in (1, 3, 4)]
    responses = app.complete(prepared, ["r1", "r3", "r4"])  # type: ignore[arg-type]
    assert [r.status for r in responses] == [200, 500, 200]
    assert json.loads(responses[1].body)["error"]["request_id"] == "r3"

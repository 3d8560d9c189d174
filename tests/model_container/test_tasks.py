"""The container per task (binary, multiclass, regression), driven by each package's model card: the model's answers
against onnxruntime on the package's holdout rows, the response and batch formats, errors that name the card's
features, the card's row cap, the metrics, the model-quality record, and load errors when card and ONNX disagree."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from model_container.card import BINARY, MULTICLASS, REGRESSION
from model_container.monitoring.record_preprocessor import prediction_of
from model_container.server.app import InferenceApp
from model_container.server.batch import BatchInferenceApp, execution_parameters
from model_container.server.config import ServerConfig
from model_container.server.logs import LogWriter
from model_container.server.metrics import MAX_CLASS_SHARES, OTHER_CLASSES, MetricsAggregator
from model_container.server.model import LoadedModel, ModelLoadError, Tally
from tests.model_container.conftest import Package

CSV, JSONL, JSON = b"text/csv", b"application/jsonlines", b"application/json"
KEYS = {
    BINARY: {"label", "probability", "model_version"},
    MULTICLASS: {"label", "probabilities", "model_version"},
    REGRESSION: {"value", "model_version"},
}


@pytest.fixture(scope="session")
def loaded(task_package: Package) -> LoadedModel:
    return LoadedModel.load(task_package.model_dir)


def app_of(model: LoadedModel, logs: LogWriter, batch: bool = False) -> InferenceApp:
    if batch:
        config = ServerConfig.from_env({"SAGEMAKER_BATCH": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
        app: InferenceApp = BatchInferenceApp(logs, execution_parameters(config))
    else:
        app = InferenceApp(logs)
    app.model = model
    return app


def reference(item: Package, rows: list[list[float]]) -> list[dict[str, Any]]:
    """The prediction objects the card promises, computed straight from onnxruntime's outputs."""
    session = ort.InferenceSession(str(item.model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    outputs = session.run(item.card.output_names, {session.get_inputs()[0].name: np.array(rows, dtype=np.float32)})
    version = item.card.version
    if item.task == REGRESSION:
        return [{"value": round(float(v), 6), "model_version": version} for v in outputs[0].reshape(-1)]
    labels, probabilities = outputs
    if item.task == BINARY:
        positive = item.card.positive_label
        return [
            {"label": int(label), "probability": round(float(p[positive]), 6), "model_version": version}
            for label, p in zip(labels, probabilities, strict=True)
        ]
    return [
        {
            "label": int(label),
            "probabilities": {name: round(float(x), 6) for name, x in zip(item.card.label_names, p, strict=True)},
            "model_version": version,
        }
        for label, p in zip(labels, probabilities, strict=True)
    ]


def assert_close(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Equal up to float32 kernel noise (1e-6) in the numbers; labels and versions exactly."""
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        assert set(mine) == set(theirs)
        for key, value in theirs.items():
            if isinstance(value, dict):
                assert list(mine[key]) == list(value)
                assert np.allclose(list(mine[key].values()), list(value.values()), atol=2e-6)
            elif isinstance(value, float):
                assert mine[key] == pytest.approx(value, abs=2e-6 * max(1.0, abs(value)))
            else:
                assert mine[key] == value


# --- the model in process ---------------------------------------------------------------------------------------
def test_the_card_picks_the_task_and_the_answers_are_onnxruntimes(loaded: LoadedModel, task_package: Package) -> None:
    assert loaded.task == task_package.task and loaded.version == task_package.card.version
    assert loaded.validator.names == task_package.card.feature_names
    scores, labels = loaded.predict(np.array(task_package.rows, dtype=np.float32))
    assert_close(loaded.objects(scores, labels), reference(task_package, task_package.rows))


def test_small_large_and_lone_rows_predict_the_same(loaded: LoadedModel, task_package: Package) -> None:
    rows = np.array(task_package.rows[:40], dtype=np.float32)
    together = loaded.predict(rows)
    for size in (1, 3, 8, 9):
        parts = [loaded.predict(rows[start : start + size]) for start in range(0, len(rows), size)]
        assert [s for part in parts for s in part[0]] == together[0]
        assert [label for part in parts for label in part[1]] == together[1]
    flat = np.array(together[0], dtype=np.float64).reshape(-1)
    assert np.array_equal(flat, np.round(flat, 6)) and len(set(flat.tolist())) > 10


def test_holdout_quality_is_the_cards(loaded: LoadedModel, task_package: Package) -> None:
    """The served model passes the card's acceptance on its holdout rows, and scores what the card records."""
    scores, labels = loaded.predict(np.array(task_package.rows, dtype=np.float32))
    truth = np.array(task_package.truth)
    if task_package.task == REGRESSION:
        metric, value = "rmse", float(np.sqrt(np.mean((np.array(scores) - truth) ** 2)))
    else:
        metric, value = "accuracy", float(np.mean(np.array(labels) == truth))
    bound = task_package.card.acceptance.get(metric, {})
    assert value >= bound.get("min", -np.inf) and value <= bound.get("max", np.inf)
    recorded = task_package.card.holdout_metrics.get(metric)
    if recorded is not None:
        assert value == pytest.approx(recorded, rel=1e-3, abs=1e-3)


def test_responses_have_the_contracts_shape(loaded: LoadedModel, task_package: Package, logs: LogWriter) -> None:
    app = app_of(loaded, logs)
    rows = task_package.rows[:5]
    response = app.handle(b"POST", b"/invocations", JSON, b"", json.dumps({"instances": rows}).encode(), "r")
    assert response.status == 200 and response.rows == 5
    predictions = json.loads(response.body)["predictions"]
    card = task_package.card
    for prediction in predictions:
        assert set(prediction) == KEYS[card.task] and prediction["model_version"] == card.version
        if card.task == REGRESSION:
            assert isinstance(prediction["value"], float)
            continue
        assert prediction["label"] in range(card.classes)
        if card.task == BINARY:
            assert 0 <= prediction["probability"] <= 1
            assert (prediction["label"] == card.positive_label) == (prediction["probability"] >= 0.5)
        else:
            probabilities = prediction["probabilities"]
            assert list(probabilities) == card.label_names
            assert sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
            assert prediction["label"] == int(np.argmax(list(probabilities.values())))


def test_errors_name_the_cards_features(loaded: LoadedModel, task_package: Package, logs: LogWriter) -> None:
    app, names = app_of(loaded, logs), task_package.card.feature_names
    row = dict(zip(names, task_package.rows[0], strict=True))

    def error(instances: list[Any]) -> dict[str, Any]:
        body = json.dumps({"instances": instances}).encode()
        response = app.handle(b"POST", b"/invocations", JSON, b"", body, "r")
        assert response.status == 400
        result: dict[str, Any] = json.loads(response.body)["error"]
        return result

    missing = error([row, {k: v for k, v in row.items() if k != names[-1]}])
    assert (missing["code"], missing["row"], missing["field"]) == ("missing_field", 1, names[-1])
    assert repr(names[-1]) in missing["message"]
    far = error([{**row, names[1]: task_package.card.feature_schema["features"][1]["maximum"] * 10 + 1e6}])
    assert (far["code"], far["field"]) == ("out_of_range", names[1]) and repr(names[1]) in far["message"]
    short = error([task_package.rows[0][:-1]])
    assert short["code"] == "wrong_feature_count" and f"expected {task_package.card.width}" in short["message"]


def test_batch_output_per_task(loaded: LoadedModel, task_package: Package, logs: LogWriter) -> None:
    rows = task_package.rows[:30]
    body = "".join(",".join(repr(v) for v in row) + "\n" for row in rows).encode()
    app = app_of(loaded, logs, batch=True)
    expected = json.loads(app_of(loaded, logs).handle(b"POST", b"/invocations", CSV, b"", body, "r").body)
    expected = expected["predictions"]
    as_csv = app.handle(b"POST", b"/invocations", CSV, b"", body, "r")
    lines = as_csv.body.decode().split("\n")
    assert as_csv.status == 200 and lines[-1] == "" and len(lines) == len(rows) + 1
    card = task_package.card
    for line, prediction in zip(lines, expected, strict=False):
        cells = line.split(",")
        assert cells[-1] == card.version
        numbers = [float(cell) for cell in cells[:-1]]
        assert all(len(cell.split(".")[1]) == 6 for cell in cells[:-1] if "." in cell)
        if card.task == BINARY:
            assert numbers == [prediction["label"], prediction["probability"]]
        elif card.task == MULTICLASS:
            assert numbers == [prediction["label"], *prediction["probabilities"].values()]
            assert len(cells) == card.classes + 2
        else:
            assert numbers == [pytest.approx(prediction["value"], abs=5e-7)]
    as_lines = app.handle(b"POST", b"/invocations", CSV, JSONL, body, "r")
    assert [json.loads(line) for line in as_lines.body.splitlines()] == expected


# --- metrics and monitoring -------------------------------------------------------------------------------------
def test_metrics_per_task(loaded: LoadedModel, task_package: Package, logs: LogWriter) -> None:
    card = task_package.card
    metrics = MetricsAggregator(card.name, 0, card.task, card.label_names)
    metrics.model_version = card.version
    rows = np.array(task_package.rows, dtype=np.float32)
    scores, labels = loaded.predict(rows)
    metrics.observe(200, 3.0, len(rows), loaded.tally(scores, labels))
    metrics.observe(400, 1.0)
    records = metrics.flush(now=1000.0)
    for record in records:
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        assert all(record[name] == value for name, value in (("ModelName", card.name), ("ModelVersion", card.version)))
        assert all(dimension in record for dimension in directive["Dimensions"][0])
        assert all(isinstance(record[m["Name"]], int | float) for m in directive["Metrics"])
    main = records[0]
    assert main["Rows"] == len(rows) and main["Errors4xx"] == 1
    binary_names = {"MeanPositiveProbability", "PositiveRate"}
    if card.task == BINARY:
        assert main["MeanPositiveProbability"] == round(sum(scores) / len(rows), 6)
        assert main["PositiveRate"] == round(sum(label == card.positive_label for label in labels) / len(rows), 6)
        assert len(records) == 1
    elif card.task == REGRESSION:
        assert main["MeanPredictedValue"] == round(sum(scores) / len(rows), 6)
        assert not binary_names & set(main) and len(records) == 1
    else:
        assert not binary_names & set(main)
        shares = {r["PredictedClass"]: r["PredictedClassShare"] for r in records[1:]}
        assert list(shares) == card.label_names
        assert shares == {name: round(labels.count(i) / len(rows), 6) for i, name in enumerate(card.label_names)}
        assert all(
            r["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["ModelName", "ModelVersion", "PredictedClass"]]
            for r in records[1:]
        )


def test_class_share_streams_are_bounded() -> None:
    names = [f"class_{i}" for i in range(MAX_CLASS_SHARES + 7)]
    metrics = MetricsAggregator("many", 0, MULTICLASS, names)
    counts = [1] * len(names)
    metrics.observe(200, 1.0, len(names), Tally(class_counts=counts))
    records = metrics.flush(now=1.0)[1:]
    assert len(records) == MAX_CLASS_SHARES + 1 and records[-1]["PredictedClass"] == OTHER_CLASSES
    assert sum(r["PredictedClassShare"] for r in records) == pytest.approx(1, abs=1e-5)


def test_model_quality_record_per_task(loaded: LoadedModel, task_package: Package, logs: LogWriter) -> None:
    """RECORD_MODE=model_quality hands Model Monitor the attributes its problem type reads."""
    app = app_of(loaded, logs)
    one = app.handle(
        b"POST", b"/invocations", JSON, b"", json.dumps({"instances": task_package.rows[:1]}).encode(), "r"
    )
    (prediction,) = json.loads(one.body)["predictions"]
    record = prediction_of(one.body.decode())
    if task_package.task == BINARY:
        assert record == {"label": prediction["label"], "probability": prediction["probability"]}
    elif task_package.task == MULTICLASS:
        assert record == {"label": prediction["label"]}
    else:
        assert record == {"value": prediction["value"]}
    two = app.handle(
        b"POST", b"/invocations", JSON, b"", json.dumps({"instances": task_package.rows[:2]}).encode(), "r"
    )
    assert prediction_of(two.body.decode()) is None


# --- load errors ------------------------------------------------------------------------------------------------
def broken_copy(item: Package, tmp_path: Path, **changes: Any) -> Path:
    target = tmp_path / "model"
    shutil.copytree(item.model_dir, target)
    card = json.loads((target / "metadata.json").read_text())
    for key, value in changes.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = value
    (target / "metadata.json").write_text(json.dumps(card))
    return target


def test_a_card_for_another_task_is_a_load_error(task_package: Package, tmp_path: Path) -> None:
    """The graph's outputs must be the card's task's: count, then the probabilities' columns."""
    card = task_package.card
    if task_package.task == REGRESSION:  # one output under a classifier's card
        changes: dict[str, Any] = {"task": BINARY, "labels": {"0": "low", "1": "high"}, "positive_label": 1}
        message = "has 1 output\\(s\\) .* a binary_classification model .* has 2: label, probabilities"
    elif task_package.task == BINARY:  # two outputs under a regressor's card
        changes = {"task": REGRESSION, "target": {"name": "y"}, "labels": None, "positive_label": None}
        message = "has 2 output\\(s\\) .* a regression model .* has 1: value"
    else:  # the graph's classes under a card that names one class fewer
        fewer = card.label_names[:-1]
        changes = {"labels": dict(enumerate(fewer)) if len(fewer) >= 3 else {"0": "a", "1": "b"}}
        if len(fewer) < 3:
            changes |= {"task": BINARY, "positive_label": 1}
        message = f"float \\[N, {max(len(fewer), 2)}\\]: one column per class"
    with pytest.raises(ModelLoadError, match=message):
        LoadedModel.load(broken_copy(task_package, tmp_path, acceptance=None, **changes))


def test_a_card_with_another_width_is_a_load_error(task_package: Package, tmp_path: Path) -> None:
    schema = task_package.card.feature_schema
    schema = {**schema, "features": schema["features"][:-1]}
    with pytest.raises(ModelLoadError, match=f"lists {task_package.card.width - 1} features"):
        LoadedModel.load(broken_copy(task_package, tmp_path, feature_schema=schema))


def test_an_invalid_card_is_a_load_error_naming_the_field(task_package: Package, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="task"):
        LoadedModel.load(broken_copy(task_package, tmp_path, task="clustering"))


# --- over HTTP, one server per task -------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.xdist_group("model_server")
def test_served_answers_are_onnxruntimes_for_json_and_csv(task_package: Package, task_servers) -> None:
    server = task_servers(task_package)
    rows = task_package.rows
    status, result = server.invoke({"instances": rows})
    assert status == 200
    assert_close(result["predictions"], reference(task_package, rows))  # type: ignore[index]
    csv = "".join(",".join(repr(v) for v in row) + "\n" for row in rows[:7])
    status_csv, from_csv = server.invoke(csv, "text/csv")
    assert status_csv == 200 and from_csv["predictions"] == result["predictions"][:7]  # type: ignore[index]


@pytest.mark.slow
@pytest.mark.xdist_group("model_server")
def test_served_errors_and_the_cards_row_cap(task_package: Package, task_servers) -> None:
    server, card = task_servers(task_package), task_package.card
    bad = list(task_package.rows[0])
    bad[-1] = "x"
    status, result = server.invoke({"instances": [task_package.rows[0], bad]})
    assert status == 400
    assert (result["error"]["code"], result["error"]["row"], result["error"]["field"]) == (  # type: ignore[index]
        "wrong_type",
        1,
        card.feature_names[-1],
    )
    cap = card.max_batch_rows
    row = ",".join(repr(v) for v in task_package.rows[0]) + "\n"
    assert server.invoke(row * cap, "text/csv")[0] == 200
    status, result = server.invoke(row * (cap + 1), "text/csv")
    assert status == 400 and result["error"]["code"] == "too_many_rows"  # type: ignore[index]
    assert str(cap) in result["error"]["message"]  # type: ignore[index]


@pytest.mark.slow
@pytest.mark.xdist_group("model_server")
def test_served_metrics_are_the_tasks(task_package: Package, task_servers) -> None:
    server, card = task_servers(task_package), task_package.card
    assert server.invoke({"instances": task_package.rows[:4]})[0] == 200
    wanted = {BINARY: "MeanPositiveProbability", REGRESSION: "MeanPredictedValue", MULTICLASS: "Rows"}[card.task]
    deadline = time.monotonic() + 10
    while not (with_rows := [r for r in server.events("metrics") if wanted in r and r["Rows"]]):
        assert time.monotonic() < deadline, f"no metrics record with {wanted} and rows"
        time.sleep(0.1)
    assert with_rows[-1]["ModelVersion"] == card.version
    if card.task == MULTICLASS:
        shares = server.wait_for("class_metrics", card.classes)
        assert {r["PredictedClass"] for r in shares} == set(card.label_names)
    else:
        assert not server.events("class_metrics")


def test_a_binary_cards_positive_label_picks_the_probability_reported(packages, tmp_path: Path) -> None:
    item = packages("binary")
    other = 1 - int(item.card.positive_label or 0)
    flipped = LoadedModel.load(broken_copy(item, tmp_path, positive_label=other))
    rows = np.array(item.rows[:20], dtype=np.float32)
    scores, labels = flipped.predict(rows)
    expected = reference(item, item.rows[:20])
    assert labels == [e["label"] for e in expected]
    assert np.allclose(scores, [1 - e["probability"] for e in expected], atol=2e-6)
    assert flipped.tally(scores, labels).positives == sum(label == other for label in labels)

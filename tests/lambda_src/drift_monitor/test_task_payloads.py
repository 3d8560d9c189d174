"""The drift job reads every task's responses as the serving container writes them (issue 16).

The container's own model classes (model_container/server/model.py) answer the package's holdout rows as JSON
(the real-time contract) and as Batch Transform CSV; the job's decoder and the card's task (drift_engine.model_output,
which reads metadata.json as JSON, never model_container) must read both into the same predictions. A response of
another task's shape is a malformed record, counted with its reason, never a silently wrong statistic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from drift_engine.capture_records import CaptureStats, iter_capture_records
from drift_engine.model_output import ModelOutput
from drift_engine.payload_decoding import MalformedPayload, decode_predictions

from model_container.card import ModelCard
from model_container.server.model import LoadedModel
from tests.model_packages import model_package

__all__ = ["model_package"]  # the imported fixture, requested by name below


def _served(package: Path) -> tuple[ModelCard, ModelOutput, list[dict], list]:
    card = ModelCard.load(package)
    model = LoadedModel.load(package)
    holdout = np.loadtxt(package / "holdout.csv", delimiter=",", ndmin=2)[:, 1:]
    scores, labels = model.predict(holdout.astype(np.float32))
    json_body = json.loads(model.json_body(scores, labels))
    csv_body = model.csv(scores, labels).decode()
    return card, ModelOutput.from_metadata(json.loads((package / "metadata.json").read_text())), json_body, csv_body


def _decoded(body: str, content_type: str) -> list:
    return decode_predictions({"observedContentType": content_type, "data": body, "encoding": "CSV"})


def test_the_card_says_the_task_and_the_classes(model_package: Path) -> None:
    card = ModelCard.load(model_package)
    output = ModelOutput.from_metadata(dict(card.raw))
    assert (output.task, list(output.label_names)) == (card.task, card.label_names)
    assert output.prediction_columns == len(np.loadtxt(model_package / "baseline_predictions.csv", delimiter=",",
                                                       ndmin=2)[0])  # fmt: skip
    if card.task == "binary_classification":
        assert output.positive_label == card.positive_label


def test_json_and_batch_csv_responses_read_the_same_per_task(model_package: Path) -> None:
    card, output, json_body, csv_body = _served(model_package)
    from_json = [output.read(p) for p in decode_predictions({"data": json.dumps(json_body), "encoding": "JSON"})]
    from_csv = [output.read(p) for p in _decoded(csv_body, "text/csv")]
    predictions = json_body["predictions"]
    assert len(from_json) == len(from_csv) == len(predictions)
    for served, a, b in zip(predictions, from_json, from_csv, strict=True):
        assert a.label == b.label
        assert a.score == pytest.approx(b.score, abs=1e-6)
        if card.task == "regression":
            assert (a.label, a.score) == (None, pytest.approx(served["value"]))
        elif card.task == "multiclass_classification":
            # The predicted class, with its probability; the argmax of the named probabilities agrees.
            named = served["probabilities"]
            assert a.label == served["label"] == max(range(card.classes), key=lambda i: named[card.label_names[i]])
            assert a.score == pytest.approx(named[card.label_names[a.label]])
        else:
            assert (a.label, a.score) == (served["label"], pytest.approx(served["probability"]))
    versions = {p.model_version for p in _decoded(csv_body, "text/csv")}
    assert versions == {card.version}


# Each task's response, as JSON and as a Batch Transform CSV row ({v}: the model version).
SHAPES = {
    "binary_classification": ({"label": 1, "probability": 0.9}, "1,0.9,{v}"),
    "multiclass_classification": ({"label": 2, "probabilities": {"a": 0.1, "b": 0.2, "c": 0.7}}, "2,0.1,0.2,0.7,{v}"),
    "regression": ({"value": 151.25}, "151.25,{v}"),
}


def test_a_response_of_another_tasks_shape_is_malformed(model_package: Path) -> None:
    card = ModelCard.load(model_package)
    output = ModelOutput.from_metadata(dict(card.raw))
    others = [task for task in SHAPES if task != card.task]
    assert len(others) == 2
    for other in others:
        item, row = SHAPES[other]
        as_json = decode_predictions({"data": json.dumps({"predictions": [item]}), "encoding": "JSON"})
        as_csv = _decoded(row.format(v=card.version), "text/csv")
        for prediction in (*as_json, *as_csv):
            if card.task == "binary_classification" and prediction.cells == (151.25,):
                # One CSV number is a binary probability: this one is outside [0, 1], counted out of range.
                assert output.read(prediction).score == 151.25
                continue
            with pytest.raises(MalformedPayload):
                output.read(prediction)


def test_the_job_counts_another_tasks_records_as_malformed(model_package: Path) -> None:
    """In the job a response that does not fit the serving model's task is a malformed record (reason, sample)."""
    card, output, json_body, _ = _served(model_package)
    good = {"captureData": {"endpointInput": {"data": json.dumps({"instances": [[0.0] * card.width]}),
                                              "encoding": "JSON"},
                            "endpointOutput": {"data": json.dumps({"predictions": json_body["predictions"][:1]}),
                                               "encoding": "JSON"}}}  # fmt: skip
    bad = json.loads(json.dumps(good))
    wrong = {"label": card.classes + 5} if card.is_classifier else {"label": 1, "probability": 0.4}
    bad["captureData"]["endpointOutput"]["data"] = json.dumps({"predictions": [{**wrong, "model_version": "x"}]})
    stats = CaptureStats()

    def check(rows: list) -> None:
        for row in rows:
            output.read(row.prediction)

    kept = list(iter_capture_records([("f:1", json.dumps(good)), ("f:2", json.dumps(bad))], stats, check=check))
    assert len(kept) == 1 and stats.total_rows == 1
    assert stats.malformed_records == 1 and stats.malformed_samples[0]["source"] == "f:2"

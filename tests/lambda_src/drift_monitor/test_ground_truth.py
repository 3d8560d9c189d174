import json

import numpy as np
import pytest
from drift_engine.capture_records import CapturedRow
from drift_engine.ground_truth import evaluate_quality, parse_label_line, parse_label_lines
from drift_engine.payload_decoding import Prediction


def test_label_line_formats() -> None:
    assert parse_label_line('{"inferenceId": "a", "label": 1}') == ("a", [1])
    sagemaker = {"groundTruthData": {"data": "0", "encoding": "CSV"}, "eventMetadata": {"eventId": "e"}}
    assert parse_label_line(json.dumps(sagemaker)) == ("e", [0])
    with_inference = {"groundTruthData": {"data": "1,0"}, "eventMetadata": {"eventId": "e", "inferenceId": "i"}}
    assert parse_label_line(json.dumps(with_inference)) == ("i", [1, 0])


def test_bad_label_lines_are_counted() -> None:
    labels = parse_label_lines([("f", '{"inferenceId": "a", "label": 1}'), ("f", "nope"), ("f", '{"label": 1}')])
    assert labels.labels == {"a": [1]}
    assert labels.malformed_lines == 2


def _rows(scores: list[float]) -> list[CapturedRow]:
    return [
        CapturedRow([0.0], Prediction(int(s >= 0.5), s if s >= 0.5 else 1 - s, "1"), f"id-{i}")
        for i, s in enumerate(scores)
    ]


def test_accuracy_and_auc_over_joined_labels() -> None:
    scores = [0.1, 0.4, 0.35, 0.8]
    lines = [("f", json.dumps({"inferenceId": f"id-{i}", "label": y})) for i, y in enumerate([0, 0, 1, 1])]
    lines.append(("f", json.dumps({"inferenceId": "not-captured", "label": 1})))
    result = evaluate_quality(_rows(scores), parse_label_lines(lines), "predicted_label", min_labels=4)
    assert result.status == "ok"
    assert result.joined_labels == 4
    assert result.accuracy == pytest.approx(0.75)  # 0.35 predicted 0 but label 1
    assert result.roc_auc == pytest.approx(0.75)


def test_below_minimum_labels_is_insufficient() -> None:
    labels = parse_label_lines([("f", json.dumps({"inferenceId": "id-0", "label": 1}))])
    result = evaluate_quality(_rows([0.9, 0.2]), labels, "predicted_label", min_labels=2)
    assert (result.status, result.joined_labels, result.accuracy) == ("insufficient_data", 1, None)


def test_multi_instance_record_needs_one_label_per_instance() -> None:
    rows = [CapturedRow([0.0], Prediction(1, 0.9, "1"), "r"), CapturedRow([0.0], Prediction(0, 0.9, "1"), "r")]
    matched = parse_label_lines([("f", json.dumps({"inferenceId": "r", "labels": [1, 0]}))])
    assert evaluate_quality(rows, matched, "predicted_label", 1).accuracy == pytest.approx(1.0)
    mismatched = parse_label_lines([("f", json.dumps({"inferenceId": "r", "label": 1}))])
    assert evaluate_quality(rows, mismatched, "predicted_label", 1).joined_labels == 0
    assert np.isfinite(evaluate_quality(rows, matched, "predicted_label", 1).roc_auc or 0.0)

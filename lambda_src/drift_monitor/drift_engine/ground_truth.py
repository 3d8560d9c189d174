"""Join uploaded ground-truth labels with captured predictions; accuracy and ROC AUC."""

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from drift_engine.capture_records import CapturedRow
from drift_engine.drift_statistics import roc_auc
from drift_engine.feature_drift import positive_class_score


@dataclass
class LabelSet:
    """Labels by join key (inferenceId or eventId) plus count of unusable lines."""

    labels: dict[str, list[int]]
    malformed_lines: int = 0


def _labels_from(value: object) -> list[int]:
    if isinstance(value, list):
        return [int(float(item)) for item in value]
    if isinstance(value, str):
        return [int(float(cell)) for cell in value.replace("\n", ",").split(",") if cell.strip()]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [int(value)]
    raise ValueError("unsupported label value")


def parse_label_line(line: str) -> tuple[str, list[int]]:
    """`{"inferenceId", "label"}` or SageMaker `{"groundTruthData": {"data"}, "eventMetadata": {...}}`."""
    record = json.loads(line)
    if "groundTruthData" in record:
        metadata = record.get("eventMetadata") or {}
        key = metadata.get("inferenceId") or metadata.get("eventId")
        labels = _labels_from(record["groundTruthData"].get("data"))
    else:
        key = record.get("inferenceId") or record.get("eventId")
        labels = _labels_from(record["labels"] if "labels" in record else record.get("label"))
    if not key or not labels:
        raise ValueError("label line without id or label")
    return str(key), labels


def parse_label_lines(lines: Iterable[tuple[str, str]]) -> LabelSet:
    label_set = LabelSet(labels={})
    for _, line in lines:
        if not line.strip():
            continue
        try:
            key, labels = parse_label_line(line)
        except (ValueError, TypeError, KeyError, AttributeError):
            label_set.malformed_lines += 1
            continue
        label_set.labels[key] = labels
    return label_set


@dataclass
class QualityResult:
    """Model quality over the joined labels of one model version."""

    status: str
    joined_labels: int
    accuracy: float | None = None
    roc_auc: float | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def join_labels(rows: Sequence[CapturedRow], label_set: LabelSet, probability_of: str) -> tuple[np.ndarray, ...]:
    """(true labels, predicted labels, positive-class scores) for rows whose record has labels.

    A record may carry several instances; its label list must have one label per instance.
    """
    by_key: dict[str, list[CapturedRow]] = defaultdict(list)
    for row in rows:
        if row.join_key:
            by_key[row.join_key].append(row)
    truth, predicted, scores = [], [], []
    for key, key_rows in by_key.items():
        labels = label_set.labels.get(key)
        if labels is None or len(labels) != len(key_rows):
            continue
        for row, label in zip(key_rows, labels, strict=True):
            score = positive_class_score(row.prediction, probability_of)
            if math.isnan(score):
                continue
            label_pred = row.prediction.label if row.prediction and row.prediction.label is not None else None
            truth.append(label)
            predicted.append(int(score >= 0.5) if label_pred is None else label_pred)
            scores.append(score)
    return np.array(truth, dtype=int), np.array(predicted, dtype=int), np.array(scores, dtype=float)


def evaluate_quality(
    rows: Sequence[CapturedRow], label_set: LabelSet, probability_of: str, min_labels: int
) -> QualityResult:
    truth, predicted, scores = join_labels(rows, label_set, probability_of)
    if truth.size < min_labels:
        return QualityResult(status="insufficient_data", joined_labels=int(truth.size))
    return QualityResult(
        status="ok",
        joined_labels=int(truth.size),
        accuracy=float(np.mean(truth == predicted)),
        roc_auc=roc_auc(truth, scores),
    )

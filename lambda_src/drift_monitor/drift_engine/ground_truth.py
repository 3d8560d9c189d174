"""Join uploaded ground-truth labels with captured predictions; the model's quality metrics per task.

Binary: accuracy, precision, recall, ROC AUC (positive = the card's positive label). Multiclass: accuracy, macro-F1,
the worst class's recall and each class's recall. Regression: RMSE, MAE, R². The names are the card's metric names
(model_container/card.py METRICS); ground truth is a class index for classifiers, the target value for regression.
"""

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drift_engine.capture_records import MAX_MALFORMED_SAMPLES, CapturedRow
from drift_engine.drift_statistics import Reservoir, roc_auc
from drift_engine.feature_drift import DEFAULT_RESERVOIR_SIZE
from drift_engine.model_output import BINARY, MULTICLASS, ModelOutput
from drift_engine.payload_decoding import MalformedPayload, finite_number, loads

Truth = int | float  # a class index, or a regression target


@dataclass
class LabelSet:
    """Labels by join key (inferenceId or eventId) plus the unusable lines: counted, with reasons and samples."""

    labels: dict[str, list[Truth]]
    malformed_lines: int = 0
    lines: int = 0
    malformed_reasons: Counter[str] = field(default_factory=Counter)
    malformed_samples: list[dict[str, str]] = field(default_factory=list)

    def record_malformed(self, source: str, reason: str) -> None:
        self.malformed_lines += 1
        self.malformed_reasons[reason.split(":")[0]] += 1
        if len(self.malformed_samples) < MAX_MALFORMED_SAMPLES:
            self.malformed_samples.append({"source": source, "reason": reason[:300]})

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "labels": len(self.labels),
            "malformed_lines": self.malformed_lines,
            "malformed_reasons": dict(self.malformed_reasons),
            "malformed_samples": self.malformed_samples,
        }


def to_truth(value: Any) -> Truth:
    """A ground-truth value: a finite number (or its text), an int when integer-valued (a class index), else a
    float (a regression target); raises MalformedPayload otherwise, e.g. for `"inf"` or `1e999`."""
    number = finite_number(value)
    return int(number) if number.is_integer() else number


def _labels_from(value: object) -> list[Truth]:
    if isinstance(value, list):
        return [to_truth(item) for item in value]
    if isinstance(value, str):
        return [to_truth(cell.strip()) for cell in value.replace("\n", ",").split(",") if cell.strip()]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [to_truth(value)]
    raise MalformedPayload("unsupported label value")


def parse_label_line(line: str) -> tuple[str, list[Truth]]:
    """`{"inferenceId", "label"}` or SageMaker `{"groundTruthData": {"data"}, "eventMetadata": {...}}`; raises
    MalformedPayload (a ValueError) on anything else, e.g. a label of `"inf"` or `1e999`."""
    try:
        record = loads(line)
    except json.JSONDecodeError as error:
        raise MalformedPayload(f"bad json line: {error.msg}") from error
    except RecursionError as error:
        raise MalformedPayload("bad json line: nested too deeply") from error
    if not isinstance(record, dict):
        raise MalformedPayload(f"not an object: {type(record).__name__}")
    if "groundTruthData" in record:
        metadata, truth = record.get("eventMetadata") or {}, record["groundTruthData"]
        if not isinstance(metadata, dict) or not isinstance(truth, dict):
            raise MalformedPayload("bad groundTruthData or eventMetadata: not an object")
        key = metadata.get("inferenceId") or metadata.get("eventId")
        labels = _labels_from(truth.get("data"))
    else:
        key = record.get("inferenceId") or record.get("eventId")
        labels = _labels_from(record["labels"] if "labels" in record else record.get("label"))
    if not key or not isinstance(key, str | int) or not labels:
        raise MalformedPayload("label line without id or label")
    return str(key), labels


def parse_label_lines(lines: Iterable[tuple[str, str]]) -> LabelSet:
    label_set = LabelSet(labels={})
    for source, line in lines:
        if not line.strip():
            continue
        label_set.lines += 1
        try:
            key, labels = parse_label_line(line)
        except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError, RecursionError) as error:
            label_set.record_malformed(
                source,
                str(error)
                if isinstance(error, MalformedPayload)
                else f"unreadable line: {type(error).__name__}: {error}",
            )
            continue
        label_set.labels[key] = labels
    return label_set


def record_labels(key: str | None, rows: Sequence[CapturedRow], label_set: LabelSet) -> list[tuple[CapturedRow, Truth]]:
    """The join rule: one capture record's rows with its labels, when its key has exactly one label per instance
    (in order); otherwise nothing. The quality metrics and the retraining dataset (model_container/dataset) use it."""
    labels = label_set.labels.get(key) if key else None
    if labels is None or len(labels) != len(rows):
        return []
    return list(zip(rows, labels, strict=True))


@dataclass
class QualityResult:
    """Model quality over the joined labels of one model version: the task's metrics (None when not computable),
    by the card's metric names."""

    status: str
    joined_labels: int
    task: str = BINARY
    metrics: dict[str, float | None] = field(default_factory=dict)
    class_recall: dict[str, float | None] = field(default_factory=dict)  # multiclass: recall per class name
    invalid_labels: int = 0  # labels joined to a prediction but not a class of the model (classifiers)

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("accuracy")

    @property
    def roc_auc(self) -> float | None:
        return self.metrics.get("roc_auc")

    def as_dict(self) -> dict[str, object]:
        document: dict[str, object] = {
            "status": self.status,
            "task": self.task,
            "joined_labels": self.joined_labels,
            "invalid_labels": self.invalid_labels,
            **self.metrics,
        }
        if self.task == MULTICLASS:
            document["class_recall"] = self.class_recall
        return document


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


class QualityStream:
    """One version's predictions joined with their labels as records stream by, in fixed memory: a confusion
    matrix (classifiers) or error sums (regression), exact; and for binary ROC AUC a uniform sample of
    (label, score) pairs."""

    def __init__(
        self,
        label_set: LabelSet,
        probability_of: str,
        sample_size: int = DEFAULT_RESERVOIR_SIZE,
        seed: int = 0,
        output: ModelOutput | None = None,
    ) -> None:
        self.label_set, self.probability_of = label_set, probability_of
        self.output = output or ModelOutput()
        self.joined = self.invalid = 0
        classes = max(self.output.classes, 1)
        self.confusion = np.zeros((classes, classes), dtype=np.int64)  # [true, predicted]
        self.sums = np.zeros(5)  # regression: squared error, absolute error, target, target², count
        self._pairs = Reservoir(sample_size, np.random.default_rng(seed), width=2)  # binary (label, score) rows

    def add_record(self, key: str | None, rows: Sequence[CapturedRow]) -> None:
        """The rows of one capture record: joined when its labels are one per instance."""
        truth, scores = [], []
        for row, label in record_labels(key, rows, self.label_set):
            reading = self.output.read(row.prediction, self.probability_of)
            if self.output.classes == 0:
                self._add_regression(reading.score, float(label))
                continue
            if reading.label is None:
                continue  # the response had no prediction to judge
            if not isinstance(label, int) or not 0 <= label < self.output.classes:
                self.invalid += 1
                continue
            self.joined += 1
            self.confusion[label, reading.label] += 1
            if self.output.task == BINARY and not math.isnan(reading.score):
                truth.append(label)
                scores.append(reading.score)
        if truth:
            self._pairs.add(np.column_stack([np.array(truth, dtype=float), np.array(scores, dtype=float)]))

    def _add_regression(self, value: float, target: float) -> None:
        if math.isnan(value):
            return
        self.joined += 1
        error = value - target
        self.sums += (error * error, abs(error), target, target * target, 1.0)

    def result(self, min_labels: int) -> QualityResult:
        result = QualityResult(
            status="ok", joined_labels=self.joined, task=self.output.task, invalid_labels=self.invalid
        )
        if self.joined < min_labels:
            result.status = "insufficient_data"
            return result
        if self.output.classes == 0:
            result.metrics = self._regression_metrics()
        elif self.output.task == BINARY:
            result.metrics = self._binary_metrics()
        else:
            result.metrics, result.class_recall = self._multiclass_metrics()
        return result

    def _binary_metrics(self) -> dict[str, float | None]:
        positive = self.output.positive_label
        true_positive = self.confusion[positive, positive]
        pairs = self._pairs.sample()
        return {
            "accuracy": float(np.trace(self.confusion)) / self.joined,
            "precision": _ratio(true_positive, self.confusion[:, positive].sum()),
            "recall": _ratio(true_positive, self.confusion[positive, :].sum()),
            "roc_auc": roc_auc(pairs[:, 0].astype(int), pairs[:, 1], positive) if pairs.size else None,
        }

    def _multiclass_metrics(self) -> tuple[dict[str, float | None], dict[str, float | None]]:
        actual, predicted, hits = self.confusion.sum(axis=1), self.confusion.sum(axis=0), np.diag(self.confusion)
        recall = [_ratio(hits[i], actual[i]) for i in range(self.output.classes)]
        # Macro-F1 over every class of the model (a class absent from both labels and predictions scores 0, as
        # scikit-learn's f1_score(labels=..., zero_division=0) that the build's holdout metrics use).
        f1 = [_ratio(2 * hits[i], actual[i] + predicted[i]) or 0.0 for i in range(self.output.classes)]
        seen = [value for value in recall if value is not None]
        metrics = {
            "accuracy": float(hits.sum()) / self.joined,
            "macro_f1": float(np.mean(f1)),
            "min_class_recall": min(seen) if seen else None,
        }
        return metrics, dict(zip(self.output.label_names, recall, strict=True))

    def _regression_metrics(self) -> dict[str, float | None]:
        squared, absolute, total, total_squared, count = self.sums
        spread = total_squared - total * total / count
        return {
            "rmse": math.sqrt(squared / count),
            "mae": absolute / count,
            # R² = 1 - SSE/SST; undefined when every target is the same value.
            "r2": 1.0 - squared / spread if spread > 1e-12 * max(total_squared, 1.0) else None,
        }


def evaluate_quality(
    rows: Sequence[CapturedRow],
    label_set: LabelSet,
    probability_of: str,
    min_labels: int,
    output: ModelOutput | None = None,
) -> QualityResult:
    """Quality over a list of rows; the rows sharing a join key count as one record (one label per instance)."""
    by_key: dict[str, list[CapturedRow]] = defaultdict(list)
    for row in rows:
        if row.join_key:
            by_key[row.join_key].append(row)
    stream = QualityStream(label_set, probability_of, output=output)
    for key, key_rows in by_key.items():
        stream.add_record(key, key_rows)
    return stream.result(min_labels)

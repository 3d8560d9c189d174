"""Join uploaded ground-truth labels with captured predictions; accuracy and ROC AUC."""

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from drift_engine.capture_records import MAX_MALFORMED_SAMPLES, CapturedRow
from drift_engine.drift_statistics import Reservoir, roc_auc
from drift_engine.feature_drift import DEFAULT_RESERVOIR_SIZE, positive_class_score
from drift_engine.payload_decoding import MalformedPayload, loads, to_label


@dataclass
class LabelSet:
    """Labels by join key (inferenceId or eventId) plus the unusable lines: counted, with reasons and samples."""

    labels: dict[str, list[int]]
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


def _labels_from(value: object) -> list[int]:
    if isinstance(value, list):
        return [to_label(item) for item in value]
    if isinstance(value, str):
        return [to_label(cell.strip()) for cell in value.replace("\n", ",").split(",") if cell.strip()]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [to_label(value)]
    raise MalformedPayload("unsupported label value")


def parse_label_line(line: str) -> tuple[str, list[int]]:
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


def record_labels(key: str | None, rows: Sequence[CapturedRow], label_set: LabelSet) -> list[tuple[CapturedRow, int]]:
    """The join rule: one capture record's rows with its labels, when its key has exactly one label per instance
    (in order); otherwise nothing. The quality metrics and the retraining dataset (model_container/dataset) use it."""
    labels = label_set.labels.get(key) if key else None
    if labels is None or len(labels) != len(rows):
        return []
    return list(zip(rows, labels, strict=True))


@dataclass
class QualityResult:
    """Model quality over the joined labels of one model version."""

    status: str
    joined_labels: int
    accuracy: float | None = None
    roc_auc: float | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class QualityStream:
    """One version's predictions joined with their labels as records stream by: exact counts of joined labels and
    correct predictions, and a fixed-size uniform sample of (label, score) pairs for ROC AUC."""

    def __init__(
        self, label_set: LabelSet, probability_of: str, sample_size: int = DEFAULT_RESERVOIR_SIZE, seed: int = 0
    ) -> None:
        self.label_set, self.probability_of = label_set, probability_of
        self.joined = self.correct = 0
        self._pairs = Reservoir(sample_size, np.random.default_rng(seed), width=2)  # (label, score) rows

    def add_record(self, key: str | None, rows: Sequence[CapturedRow]) -> None:
        """The rows of one capture record: joined when its labels are one per instance."""
        truth, scores = [], []
        for row, label in record_labels(key, rows, self.label_set):
            score = positive_class_score(row.prediction, self.probability_of)
            if math.isnan(score):
                continue
            label_pred = row.prediction.label if row.prediction and row.prediction.label is not None else None
            predicted = int(score >= 0.5) if label_pred is None else label_pred
            self.joined += 1
            self.correct += int(predicted == label)
            truth.append(label)
            scores.append(score)
        if truth:
            self._pairs.add(np.column_stack([np.array(truth, dtype=float), np.array(scores, dtype=float)]))

    def result(self, min_labels: int) -> QualityResult:
        if self.joined < min_labels:
            return QualityResult(status="insufficient_data", joined_labels=self.joined)
        return QualityResult(
            status="ok",
            joined_labels=self.joined,
            accuracy=self.correct / self.joined,
            roc_auc=roc_auc(pairs[:, 0].astype(int), pairs[:, 1]) if (pairs := self._pairs.sample()).size else None,
        )


def evaluate_quality(
    rows: Sequence[CapturedRow], label_set: LabelSet, probability_of: str, min_labels: int
) -> QualityResult:
    """Quality over a list of rows; the rows sharing a join key count as one record (one label per instance)."""
    by_key: dict[str, list[CapturedRow]] = defaultdict(list)
    for row in rows:
        if row.join_key:
            by_key[row.join_key].append(row)
    stream = QualityStream(label_set, probability_of)
    for key, key_rows in by_key.items():
        stream.add_record(key, key_rows)
    return stream.result(min_labels)

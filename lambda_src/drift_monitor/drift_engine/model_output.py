"""What a published model card (metadata.json) says about the model's output, and how one prediction reads for it.

The drift job is its own image and never imports model_container: it reads the card as JSON. The task names and
metric names are the card's (model_container/card.py); a card without `task` is a release older than the field,
a binary classifier with labels 0/1 (positive label 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drift_engine.payload_decoding import MalformedPayload, Prediction

BINARY, MULTICLASS, REGRESSION = "binary_classification", "multiclass_classification", "regression"
TASKS = (BINARY, MULTICLASS, REGRESSION)


@dataclass(frozen=True)
class Reading:
    """One prediction as its task reads it: the predicted class (classifiers) and the number whose distribution
    is compared with the baseline's (binary P(positive), regression the value; NaN when the response had none)."""

    label: int | None
    score: float


@dataclass(frozen=True)
class ModelOutput:
    """The task of one published model and its classes in label order (label i is `label_names[i]`)."""

    task: str = BINARY
    label_names: tuple[str, ...] = ("0", "1")
    positive_label: int = 1

    @property
    def classes(self) -> int:
        return len(self.label_names)

    @property
    def prediction_columns(self) -> int:
        """Columns of baseline_predictions.csv: one per class for multiclass, else one."""
        return self.classes if self.task == MULTICLASS else 1

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ModelOutput:
        """Read `task`, `labels` and `positive_label`; ValueError naming the field when they do not fit."""
        task = metadata.get("task", BINARY)
        if task not in TASKS:
            raise ValueError(f"metadata.json task {task!r} is not one of {', '.join(TASKS)}")
        if task == REGRESSION:
            return cls(task, (), 0)
        labels = metadata.get("labels", {"0": "0", "1": "1"} if task == BINARY else None)
        if not isinstance(labels, Mapping) or sorted(labels) != sorted(str(i) for i in range(len(labels))):
            raise ValueError("metadata.json labels must map every class index 0..k-1 (as a string) to its name")
        names = tuple(str(labels[str(i)]) for i in range(len(labels)))
        expected = 2 if task == BINARY else None
        if (expected is not None and len(names) != expected) or (task == MULTICLASS and len(names) < 3):
            raise ValueError(f"metadata.json labels: a {task} model cannot have {len(names)} classes")
        positive = metadata.get("positive_label", 1) if task == BINARY else 0
        if isinstance(positive, bool) or positive not in (0, 1):
            raise ValueError(f"metadata.json positive_label must be 0 or 1, got {positive!r}")
        return cls(task, names, int(positive))

    def read(self, prediction: Prediction | None, probability_of: str = "positive_class") -> Reading:
        """The task's reading of one prediction; MalformedPayload when the response does not fit the task."""
        if prediction is None:
            return Reading(None, math.nan)
        if self.task != REGRESSION and prediction.value is not None:
            raise MalformedPayload(f"a regression `value` in the response of a {self.task} model")
        if self.task == BINARY:
            return self._binary(prediction, probability_of)
        if self.task == MULTICLASS:
            return self._multiclass(prediction)
        return self._regression(prediction)

    def _binary(self, prediction: Prediction, probability_of: str) -> Reading:
        if prediction.cells is not None and len(prediction.cells) > 2:
            raise MalformedPayload(f"csv prediction with {len(prediction.cells)} columns (binary: label,probability)")
        label = prediction.label
        if label is not None and label not in (0, 1):
            raise MalformedPayload(f"label {label} is not a binary model's 0 or 1")
        probability = math.nan if prediction.probability is None else prediction.probability
        # The container reports P(label = positive); "predicted_label" servers report P(predicted label).
        if probability_of == "predicted_label" and label is not None and label != self.positive_label:
            probability = 1.0 - probability
        if label is None and not math.isnan(probability):
            label = self.positive_label if probability >= 0.5 else 1 - self.positive_label
        return Reading(label, probability)

    def _multiclass(self, prediction: Prediction) -> Reading:
        probabilities = self._class_probabilities(prediction)
        label = prediction.label
        if label is None and probabilities is not None and not any(math.isnan(p) for p in probabilities):
            label = max(range(self.classes), key=probabilities.__getitem__)
        if label is not None and not 0 <= label < self.classes:
            raise MalformedPayload(f"label {label} is outside the model's {self.classes} classes")
        score = math.nan if label is None or probabilities is None else probabilities[label]
        return Reading(label, score)

    def _class_probabilities(self, prediction: Prediction) -> list[float] | None:
        if prediction.cells is not None:  # CSV: label,<p per class...>
            cells = prediction.cells
            if len(cells) != self.classes + 1:
                raise MalformedPayload(
                    f"csv prediction with {len(cells)} columns (multiclass: label and {self.classes} probabilities)"
                )
            return list(cells[1:])
        given = prediction.probabilities
        if given is None:
            if prediction.probability is not None:
                raise MalformedPayload("a binary `probability` in the response of a multiclass model")
            return None
        if isinstance(given, Mapping):
            missing = [name for name in self.label_names if name not in given]
            if missing or len(given) != self.classes:
                raise MalformedPayload(f"probabilities name classes {sorted(given)[:5]}, not {list(self.label_names)}")
            return [_probability(given[name]) for name in self.label_names]
        if isinstance(given, list) and len(given) == self.classes:
            return [_probability(value) for value in given]
        raise MalformedPayload(f"probabilities must name the model's {self.classes} classes")

    def _regression(self, prediction: Prediction) -> Reading:
        if prediction.cells is not None:
            if len(prediction.cells) != 1:
                raise MalformedPayload(f"csv prediction with {len(prediction.cells)} columns (regression: value)")
            return Reading(None, prediction.cells[0])
        if prediction.value is not None:
            return Reading(None, prediction.value)
        if prediction.label is None and prediction.probabilities is None and prediction.probability is not None:
            return Reading(None, prediction.probability)  # a bare number in the predictions list
        raise MalformedPayload("a regression prediction carries `value`")


def _probability(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedPayload(f"bad probability: {str(value)[:40]!r}")
    return float(value) if math.isfinite(value) else math.nan

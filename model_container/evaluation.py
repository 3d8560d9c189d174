"""Holdout metrics per task, computed the same way by the build (the card's holdout_metrics) and the model gate.

Scores come from the exported ONNX graph, never from the training framework's object: what ships is measured.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from model_container.card import BINARY, MULTICLASS, REGRESSION, ModelCard


def onnx_outputs(onnx_bytes: bytes, features: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return list(session.run(None, {session.get_inputs()[0].name: features.astype(np.float32)}))


def predictions(onnx_bytes: bytes, features: np.ndarray, task: str) -> dict[str, np.ndarray]:
    """{"label", "probabilities"} for a classifier ([N], [N, classes]); {"value"} ([N]) for a regressor."""
    outputs = onnx_outputs(onnx_bytes, features)
    if task == REGRESSION:
        return {"value": np.asarray(outputs[0], dtype=np.float64).reshape(len(features))}
    return {"label": np.asarray(outputs[0]).astype(np.int64), "probabilities": np.asarray(outputs[1], np.float64)}


def baseline_scores(onnx_bytes: bytes, features: np.ndarray, task: str) -> np.ndarray:
    """The drift job's reference for prediction drift, one column per row of baseline_predictions.csv:
    P(positive) for binary, every class probability for multiclass, the value for regression."""
    predicted = predictions(onnx_bytes, features, task)
    if task == BINARY:
        return predicted["probabilities"][:, 1:2]
    if task == MULTICLASS:
        return predicted["probabilities"]
    return predicted["value"].reshape(-1, 1)


def metrics(task: str, y_true: np.ndarray, predicted: dict[str, np.ndarray], label_names: list[str]) -> dict[str, Any]:
    """The task's holdout metrics (model_container.card.METRICS), 6 decimals, plus `rows`."""
    found: dict[str, Any]
    if task == BINARY:
        labels = predicted["label"]
        found = {
            "accuracy": accuracy_score(y_true, labels),
            "precision": precision_score(y_true, labels, zero_division=0),
            "recall": recall_score(y_true, labels, zero_division=0),
            "roc_auc": roc_auc_score(y_true, predicted["probabilities"][:, 1]),
        }
    elif task == MULTICLASS:
        labels, classes = predicted["label"], list(range(len(label_names)))
        per_class = recall_score(y_true, labels, labels=classes, average=None, zero_division=0)
        found = {
            "accuracy": accuracy_score(y_true, labels),
            "macro_f1": f1_score(y_true, labels, labels=classes, average="macro", zero_division=0),
            "min_class_recall": float(np.min(per_class)),
            **{f"recall.{name}": value for name, value in zip(label_names, per_class, strict=True)},
        }
    else:
        values = predicted["value"]
        found = {
            "rmse": float(np.sqrt(mean_squared_error(y_true, values))),
            "mae": mean_absolute_error(y_true, values),
            "r2": r2_score(y_true, values),
        }
    return {**{name: round(float(value), 6) for name, value in found.items()}, "rows": len(y_true)}


def score(card: ModelCard, onnx_bytes: bytes, features: np.ndarray, y_true: np.ndarray) -> dict[str, Any]:
    """Holdout metrics of an ONNX graph for the card's task."""
    return metrics(card.task, y_true, predictions(onnx_bytes, features, card.task), card.label_names)

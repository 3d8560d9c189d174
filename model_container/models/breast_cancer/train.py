"""Breast-cancer diagnosis, a binary classifier: scikit-learn's Wisconsin diagnostic dataset, 1 = malignant.

`load()` gives (feature names, features, labels); `train(x, y, seed=..., hyperparameters=...)` a fitted
scikit-learn estimator, which the build exports to ONNX (model_container/build_model.py).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def load() -> tuple[list[str], np.ndarray, np.ndarray]:
    data = load_breast_cancer()
    names = [re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_") for name in data.feature_names]
    # sklearn encodes 0 = malignant, 1 = benign; flipped so that the positive class (1) is the finding.
    return names, data.data.astype(np.float64), (data.target == 0).astype(np.int64)


def train(x: np.ndarray, y: np.ndarray, *, seed: int, hyperparameters: dict[str, Any]) -> Pipeline:
    model = LogisticRegression(**hyperparameters, random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("classify", model)]).fit(x, y)

"""Wine cultivar, a multiclass classifier: scikit-learn's wine recognition dataset (three cultivars).

`load()` gives (feature names, features, labels 0..2); `train(x, y, seed=..., hyperparameters=...)` a fitted
scikit-learn estimator, which the build exports to ONNX (model_container/build_model.py).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def load() -> tuple[list[str], np.ndarray, np.ndarray]:
    data = load_wine()
    # 'od280/od315_of_diluted_wines' -> 'od280_od315_of_diluted_wines': feature names are identifiers.
    names = [re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_") for name in data.feature_names]
    return names, data.data.astype(np.float64), data.target.astype(np.int64)


def train(x: np.ndarray, y: np.ndarray, *, seed: int, hyperparameters: dict[str, Any]) -> Pipeline:
    model = LogisticRegression(**hyperparameters, random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("classify", model)]).fit(x, y)

"""Diabetes progression, a regressor: scikit-learn's diabetes dataset (ten baseline measurements, mean-centred
and scaled by scikit-learn, so most features are negative for some patients).

`load()` gives (feature names, features, targets); `train(x, y, seed=..., hyperparameters=...)` a fitted
scikit-learn estimator, which the build exports to ONNX (model_container/build_model.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def load() -> tuple[list[str], np.ndarray, np.ndarray]:
    data = load_diabetes()
    return list(data.feature_names), data.data.astype(np.float64), data.target.astype(np.float64)


def train(x: np.ndarray, y: np.ndarray, *, seed: int, hyperparameters: dict[str, Any]) -> Pipeline:
    # Ridge is deterministic; `seed` only matters to solvers that sample ("sag", "saga").
    model = Ridge(**hyperparameters, random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("regress", model)]).fit(x, y)

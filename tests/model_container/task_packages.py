"""Model packages per task for the container tests.

The shared fixture (tests/model_packages.py, `example_package(name)`) builds the shipped examples; until it is in
the tree this module builds equivalent packages itself with scikit-learn and skl2onnx (wine: multiclass,
diabetes: regression, breast cancer: the default build), with a card that model_container/card.py validates.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from model_container.card import BINARY, MULTICLASS, REGRESSION, max_batch_rows

TASKS = {"binary": BINARY, "multiclass": MULTICLASS, "regression": REGRESSION}
EXAMPLES = {"binary": "breast_cancer", "multiclass": "wine", "regression": "diabetes"}

try:
    from tests.model_packages import example_package as shared_example_package
except ImportError:  # the shared fixture is not in this tree yet
    shared_example_package = None


@functools.cache
def package(kind: str) -> Path:
    """The package directory (model.onnx, metadata.json, model.tar.gz, holdout.csv, ...) of a task's example."""
    if shared_example_package is not None:
        return Path(shared_example_package(EXAMPLES[kind]))
    root = Path(tempfile.mkdtemp(prefix=f"package-{kind}-"))
    root.chmod(0o755)
    if kind == "binary":
        from model_container.build_model import build

        build(root, contract_dir=root / "contract", commit="test-commit")
        return root
    _build_sklearn(kind, root)
    return root


def _features(names: list[str], x: np.ndarray) -> list[dict[str, Any]]:
    features = []
    for name, column in zip(names, x.T, strict=True):
        low, high = float(column.min()), float(column.max())
        span = high - low
        features.append(
            {
                "name": re.sub(r"[^A-Za-z0-9_]", "_", name),
                "type": "number",
                "required": True,
                "minimum": round(low - span, 4) - 1,
                "maximum": round(high + span, 4) + 1,
                "training_min": low,
                "training_max": high,
            }
        )
    return features


def _build_sklearn(kind: str, root: Path) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn import datasets
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = datasets.load_wine() if kind == "multiclass" else datasets.load_diabetes()
    x, y = data.data.astype(np.float32), data.target
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=7)
    estimator = LogisticRegression(max_iter=2000) if kind == "multiclass" else Ridge(alpha=0.1)
    pipeline = make_pipeline(StandardScaler(), estimator).fit(x_train, y_train)
    options = {id(estimator): {"zipmap": False}} if kind == "multiclass" else None
    onnx_model = convert_sklearn(
        pipeline, initial_types=[("input", FloatTensorType([None, x.shape[1]]))], options=options, target_opset=17
    )
    onnx_bytes = onnx_model.SerializeToString()
    outputs = [output.name for output in onnx_model.graph.output]
    features = _features(list(data.feature_names), x_train)
    task = TASKS[kind]
    classes = len(data.target_names) if kind == "multiclass" else 0
    card: dict[str, Any] = {
        "model_name": "wine-classifier" if kind == "multiclass" else "diabetes-regressor",
        "model_version": "2.1.0",
        "task": task,
        "description": f"{kind} test package",
        "feature_schema": {"features": features, "max_batch_rows": max_batch_rows(len(features), task, classes)},
        "content_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "onnx": {"file": "model.onnx", "input": "input", "outputs": outputs, "opset": 17},
        "training_rows": len(x_train),
    }
    if kind == "multiclass":
        card["labels"] = {str(i): str(name) for i, name in enumerate(data.target_names)}
        card["acceptance"] = {"accuracy": {"min": 0.8}}
    else:
        card["target"] = {"name": "disease_progression", "unit": "score", "description": "one year on"}
        card["acceptance"] = {"rmse": {"max": 70}}
    (root / "model.onnx").write_bytes(onnx_bytes)
    (root / "metadata.json").write_text(json.dumps(card, indent=2))
    np.savetxt(root / "baseline.csv", x_train, delimiter=",", fmt="%.6g")
    holdout = np.column_stack([y_test, x_test])
    np.savetxt(
        root / "holdout.csv",
        holdout,
        delimiter=",",
        fmt=["%d" if kind == "multiclass" else "%.6g"] + ["%.6g"] * x.shape[1],
    )
    with tarfile.open(root / "model.tar.gz", "w:gz") as archive:
        for name in ("model.onnx", "metadata.json"):
            archive.add(root / name, arcname=name)

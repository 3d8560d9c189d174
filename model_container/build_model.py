"""Train the breast-cancer classifier and package it for SageMaker.

Run as ``python -m model_container.build_model --out model_container/dist``. Writes, into ``--out``:
``model.onnx``, ``model.tar.gz`` (model.onnx + metadata.json at the archive root), ``metadata.json``,
``baseline.csv`` (training features, header-less) and ``holdout.csv`` (label first, header-less),
and refreshes the committed feature contract ``model_container/contract/feature_schema.json``.
Everything is deterministic: the same seed and commit give byte-identical files.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import math
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import orjson
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

MODEL_NAME = "breast-cancer-classifier"
MODEL_VERSION = "1.0.0"
SEED = 20261125
HOLDOUT_FRACTION = 0.2
# The accepted range of each feature is the training min/max widened by this fraction of the
# training span on each side: unusual but plausible patients pass, while unit mistakes and
# swapped columns (values far outside anything seen in training) are rejected.
RANGE_MARGIN = 0.5
# Upper bound on rows per request; 6 MB of JSON holds roughly this many 30-feature rows.
MAX_BATCH_ROWS = 10_000
ONNX_OPSET = 17
CONTRACT_DIR = Path(__file__).parent / "contract"
# sklearn encodes 0 = malignant, 1 = benign; we flip it so the positive class (1) is the finding.
LABEL_NAMES = {"0": "benign", "1": "malignant"}
JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE


def safe_identifier(name: str) -> str:
    """'mean radius' -> 'mean_radius'."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def _round_outward(value: float, quantum: float, up: bool) -> float:
    steps = math.ceil(value / quantum) if up else math.floor(value / quantum)
    digits = max(0, -math.floor(math.log10(quantum)))
    return round(steps * quantum, digits)


def feature_schema(names: list[str], x_train: np.ndarray) -> dict[str, Any]:
    features = []
    for name, column in zip(names, x_train.T, strict=True):
        low, high = float(column.min()), float(column.max())
        span = high - low
        quantum = 10.0 ** (math.floor(math.log10(span)) - 3)
        minimum = low - RANGE_MARGIN * span
        if low >= 0:  # all of these measurements are physically non-negative
            minimum = max(0.0, minimum)
        features.append(
            {
                "name": name,
                "type": "number",
                "required": True,
                "minimum": _round_outward(minimum, quantum, up=False),
                "maximum": _round_outward(high + RANGE_MARGIN * span, quantum, up=True),
                "training_min": low,
                "training_max": high,
            }
        )
    return {
        "description": "Input features of the breast-cancer classifier, in model input order.",
        "range_rule": f"training min/max widened by {RANGE_MARGIN} x training span per side, "
        "floored at 0 for non-negative features, rounded outward",
        "max_batch_rows": MAX_BATCH_ROWS,
        "features": features,
    }


def train(seed: int) -> tuple[Pipeline, list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = load_breast_cancer()
    names = [safe_identifier(n) for n in data.feature_names]
    x = data.data.astype(np.float64)
    y = (data.target == 0).astype(np.int64)  # 1 = malignant
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=HOLDOUT_FRACTION, stratify=y, random_state=seed)
    pipeline = Pipeline(
        [("scale", StandardScaler()), ("classify", LogisticRegression(C=1.0, max_iter=1000, random_state=seed))]
    )
    pipeline.fit(x_train, y_train)
    return pipeline, names, x_train, x_test, y_train, y_test


def to_onnx(pipeline: Pipeline, n_features: int) -> bytes:
    model = convert_sklearn(
        pipeline,
        name=MODEL_NAME,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
        target_opset=ONNX_OPSET,
    )
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def onnx_predict(onnx_bytes: bytes, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(label = 1)) from the exported ONNX graph, not the sklearn object: what ships."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {"input": features.astype(np.float32)})
    return labels, probabilities[:, 1].astype(np.float64)


def holdout_metrics(onnx_bytes: bytes, x_test: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    labels, positive = onnx_predict(onnx_bytes, x_test)
    return {
        "accuracy": round(float(accuracy_score(y_test, labels)), 6),
        "precision": round(float(precision_score(y_test, labels)), 6),
        "recall": round(float(recall_score(y_test, labels)), 6),
        "roc_auc": round(float(roc_auc_score(y_test, positive)), 6),
        "rows": len(y_test),
    }


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def csv_bytes(rows: np.ndarray) -> bytes:
    # repr() of a float is the shortest exact round-trip form, so the CSV is stable and lossless.
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows).encode()


def deterministic_tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def build(
    out: Path,
    seed: int = SEED,
    version: str = MODEL_VERSION,
    commit: str | None = None,
    contract_dir: Path = CONTRACT_DIR,
) -> dict[str, Any]:
    """Train, export and package the model; return the metadata written."""
    pipeline, names, x_train, x_test, y_train, y_test = train(seed)
    onnx_bytes = to_onnx(pipeline, len(names))
    schema = feature_schema(names, x_train)
    metadata = {
        "model_name": MODEL_NAME,
        "model_version": version,
        "content_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "training_commit": commit or git_commit(),
        "seed": seed,
        "algorithm": "StandardScaler + LogisticRegression (scikit-learn), exported with skl2onnx",
        "onnx": {"file": "model.onnx", "input": "input", "outputs": ["label", "probabilities"], "opset": ONNX_OPSET},
        "labels": LABEL_NAMES,
        "positive_label": 1,
        "holdout_metrics": holdout_metrics(onnx_bytes, x_test, y_test),
        "training_rows": len(y_train),
        "baseline_csv": {"header": False, "columns": "features in feature_schema order"},
        "holdout_csv": {"header": False, "columns": "label, then features in feature_schema order"},
        "baseline_predictions_csv": {"header": False, "columns": "P(label = 1) of each baseline.csv row"},
        "feature_schema": schema,
    }
    metadata_bytes = orjson.dumps(metadata, option=JSON_OPTIONS)
    out.mkdir(parents=True, exist_ok=True)
    contract_dir.mkdir(parents=True, exist_ok=True)
    outputs = {
        out / "model.onnx": onnx_bytes,
        out / "metadata.json": metadata_bytes,
        out / "model.tar.gz": deterministic_tar_gz({"model.onnx": onnx_bytes, "metadata.json": metadata_bytes}),
        out / "baseline.csv": csv_bytes(x_train),
        # The drift job's reference for prediction drift, scored the way the server scores (6 decimals).
        out / "baseline_predictions.csv": b"".join(b"%.6f\n" % p for p in onnx_predict(onnx_bytes, x_train)[1]),
        out / "holdout.csv": b"".join(
            b"%d,%s" % (label, line)
            for label, line in zip(y_test, csv_bytes(x_test).splitlines(keepends=True), strict=True)
        ),
        contract_dir / "feature_schema.json": orjson.dumps(schema, option=JSON_OPTIONS),
    }
    for path, content in outputs.items():
        path.write_bytes(content)
    return metadata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "dist")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--version", default=MODEL_VERSION)
    parser.add_argument("--commit", default=None, help="training commit; default: git rev-parse HEAD")
    parser.add_argument("--contract-dir", type=Path, default=CONTRACT_DIR)
    args = parser.parse_args(argv)
    metadata = build(args.out, args.seed, args.version, args.commit, args.contract_dir)
    print(
        orjson.dumps(
            {
                "out": str(args.out),
                "model_version": metadata["model_version"],
                "content_sha256": metadata["content_sha256"],
                "holdout_metrics": metadata["holdout_metrics"],
            }
        ).decode()
    )


if __name__ == "__main__":
    main()

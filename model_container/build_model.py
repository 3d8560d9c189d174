"""Train a model from its source and package it for SageMaker: the model package of README "Bring your own model".

Run as ``python -m model_container.build_model --out model_container/dist``. The model source is cdk.json's
``ml-platform.defaults.model.source`` (read as JSON: this module runs in the SageMaker training image, without the
CDK), ``--source '{"train": "pkg.module:train", "data": "pkg.module:load"}'`` or ``--example wine``:

- ``train``: ``module:function`` called as ``train(x, y, seed=..., hyperparameters=...)``; returns a fitted
  scikit-learn estimator (exported with skl2onnx, no ZipMap) or the bytes of an ONNX graph.
- ``data``: ``module:function`` returning ``(feature names, features [N, width] float, labels int | targets
  float)``, or a CSV file (local path or s3:// URI) with a header: the features, and ``label`` (classifiers) or
  the card's ``target.name`` (regression).
- ``model_card.json`` beside the train module: the authored part of the model card (name, version, task,
  description, labels or target, acceptance, training {seed, holdout_fraction, hyperparameters}).
- ``{"package": DIR or s3://bucket/prefix/}``: a pre-built package, checked and copied (model_container/package.py).

Writes, into ``--out``: ``model.onnx``, ``metadata.json`` (the card: the authored fields plus feature_schema,
holdout_metrics, training_rows, content_sha256, onnx, algorithm and lineage), ``model.tar.gz`` (model.onnx +
metadata.json at the archive root), ``baseline.csv`` (training features), ``baseline_predictions.csv`` (the
drift job's reference scores, model_container/evaluation.py ``baseline_scores``) and ``holdout.csv`` (label or
target first), all header-less; and refreshes the feature contract ``model_container/contract/feature_schema.json``.
Everything is deterministic: the same seed and commit give byte-identical files.

Retraining: ``--dataset DIR`` trains on a snapshot from ``python -m model_container.dataset build``, keeps the
committed feature contract (the API does not move), holds out ``--holdout-fraction`` of each source so the
holdout includes the fresh labels, and records ``lineage`` in metadata.json. With ``--parent`` (the live
model's metadata.json) the version is the parent's next minor (1.0.0 -> 1.1.0), and a snapshot with the
parent's dataset hash and parameters exits 5: "dataset unchanged since <version>", nothing to release.
Push builds: ``--rebuild-of`` (the live model's metadata.json, with ``--dataset`` its snapshot) trains on the live
model's data; the same ONNX graph keeps the live version, another one is its next patch (``rebuild_version``).
``python -m model_container.build_model train`` is the same build inside a SageMaker training job
(``docker run IMAGE train``): see ``sagemaker_train``.

Exit codes: 0 built, 2 unusable input, 5 dataset unchanged since the parent (no model written).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import io
import json
import math
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import orjson
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from model_container import evaluation
from model_container.card import BINARY, CARD_FILE, REGRESSION, TASKS, CardError, ModelCard, max_batch_rows
from model_container.contract import load_feature_schema
from model_container.dataset import snapshot as snapshots
from model_container.dataset.sources import FeatureContract

# Defaults for a card whose `training` block leaves them out.
SEED = 20261125
HOLDOUT_FRACTION = 0.2
EXIT_UNUSABLE, EXIT_UNCHANGED = 2, 5
# The accepted range of each feature is the training min/max widened by this fraction of the
# training span on each side: unusual but plausible inputs pass, while unit mistakes and
# swapped columns (values far outside anything seen in training) are rejected.
RANGE_MARGIN = 0.5
ONNX_OPSET = 17
CONTRACT_DIR = Path(__file__).parent / "contract"
CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"
SOURCE_KEY = "ml-platform.defaults.model.source"
AUTHORED_CARD = "model_card.json"
EXAMPLES = ("breast_cancer", "wine", "diabetes")
JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
ENTRY_POINT = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
# ONNX TensorProto element types the package contract allows.
ONNX_FLOAT, ONNX_INT64, ONNX_DOUBLE = 1, 7, 11


class BuildInputError(Exception):
    """A source, snapshot, parent or argument the build cannot use (exit 2); the message names it."""


class DatasetUnchanged(Exception):
    """The snapshot is the parent's dataset with the parent's parameters: retraining would rebuild it (exit 5)."""

    def __init__(self, parent_version: str) -> None:
        super().__init__(f"dataset unchanged since {parent_version}: the retrained model would be identical")
        self.parent_version = parent_version


# ---- the model source ---------------------------------------------------------------------------------------
def example_source(name: str) -> dict[str, str]:
    """The `model.source` of a bundled example (model_container/models/<name>)."""
    if name not in EXAMPLES:
        raise BuildInputError(f"--example {name!r}: the examples are {', '.join(EXAMPLES)}")
    module = f"model_container.models.{name}.train"
    return {"train": f"{module}:train", "data": f"{module}:load"}


DEFAULT_SOURCE = example_source("breast_cancer")


def configured_source(cdk_json: Path = CDK_JSON) -> dict[str, Any]:
    """cdk.json's ml-platform.defaults.model.source (the breast-cancer example when unset or without cdk.json,
    as in the training image). platform_config checks that every environment has the same source."""
    try:
        context = json.loads(cdk_json.read_text())
    except FileNotFoundError:
        return dict(DEFAULT_SOURCE)
    except (OSError, ValueError) as error:
        raise BuildInputError(f"{cdk_json}: cannot read {SOURCE_KEY}: {error}") from None
    node: Any = context.get("context", {})
    for key in SOURCE_KEY.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return dict(DEFAULT_SOURCE) if node is None else node


def check_source(raw: Any, where: str = "model.source") -> dict[str, str]:
    """{"train": "module:function", "data": "module:function" | CSV path | s3 URI} or {"package": DIR | s3 URI}."""
    if not isinstance(raw, Mapping):
        raise BuildInputError(f"{where} must be an object: {{'train': ..., 'data': ...}} or {{'package': ...}}")
    if "package" in raw:
        if set(raw) != {"package"} or not isinstance(raw["package"], str) or not raw["package"]:
            raise BuildInputError(f"{where}.package must be the only key, a directory or s3:// URI")
        return {"package": raw["package"]}
    if set(raw) != {"train", "data"}:
        raise BuildInputError(f"{where} needs exactly the keys train and data (or package alone); got {sorted(raw)}")
    if not isinstance(raw["train"], str) or not ENTRY_POINT.fullmatch(raw["train"]):
        raise BuildInputError(f"{where}.train {raw['train']!r} must be 'package.module:function'")
    if not isinstance(raw["data"], str) or not raw["data"]:
        raise BuildInputError(f"{where}.data must be 'package.module:function', a CSV path or an s3:// URI")
    return {"train": raw["train"], "data": raw["data"]}


# The images build the model source where model_container/Dockerfile put it: `COPY model_container/ model_container/`
# into /src, less what model_container/Dockerfile.dockerignore leaves out of the context (dist/, bench/,
# monitoring/). A source outside those paths would build here and fail in the image build (or the training job).
REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGE_PACKAGE = "model_container"
IMAGE_EXCLUDED = ("dist", "bench", "monitoring")


def _outside_image(kind: str, where: str, value: str) -> str:
    return (
        f"{where}.{kind} {value!r} is outside what model_container/Dockerfile copies into the image "
        f"(model_container/ without {', '.join(IMAGE_EXCLUDED)}/): put it under model_container/, e.g. "
        'model_container/models/<your_model>/ (README "Bring your own model")'
    )


def check_in_image(spec: Mapping[str, str], where: str = "model.source") -> None:
    """Refuse a source the image build cannot see: an entry point outside the model_container package, or a local
    CSV or package directory outside model_container/ (S3 URIs are read from S3)."""
    for kind in ("train", "data"):
        value = spec.get(kind)
        if value is None or (kind == "data" and is_csv_source(value)):
            continue
        parts = value.partition(":")[0].split(".")
        if parts[0] != IMAGE_PACKAGE or len(parts) < 2 or parts[1] in IMAGE_EXCLUDED:
            raise BuildInputError(_outside_image(kind, where, value))
    for kind in ("data", "package"):
        value = spec.get(kind)
        if value is None or value.startswith("s3://") or (kind == "data" and not is_csv_source(value)):
            continue
        path = Path(value).resolve()
        inside = path.relative_to(REPO_ROOT).parts if path.is_relative_to(REPO_ROOT) else ()
        if inside[:1] != (IMAGE_PACKAGE,) or (len(inside) > 1 and inside[1] in IMAGE_EXCLUDED):
            raise BuildInputError(_outside_image(kind, where, value))


def entry_point(spec: str, field: str) -> Callable[..., Any]:
    module_name, _, function = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the user's module: any error on import is theirs to see, named
        raise BuildInputError(
            f"{field} {spec!r}: cannot import {module_name!r}: {type(error).__name__}: {error}"
        ) from None
    found = getattr(module, function, None)
    if not callable(found):
        raise BuildInputError(f"{field} {spec!r}: module {module_name!r} has no function {function!r}")
    return found  # type: ignore[no-any-return]


def is_csv_source(data: str) -> bool:
    return data.startswith("s3://") or data.endswith(".csv") or not ENTRY_POINT.fullmatch(data)


@dataclass(frozen=True)
class Data:
    """Rows a model trains and is evaluated on: feature names, features [N, width], labels or targets [N]."""

    names: list[str]
    x: np.ndarray
    y: np.ndarray
    uri: str


@dataclass(frozen=True)
class TrainingSource:
    """A `model.source` of a training entry point: its functions and the authored card beside them."""

    spec: Mapping[str, str]
    trainer: Callable[..., Any]
    card: Mapping[str, Any]
    card_path: Path

    @classmethod
    def resolve(cls, spec: Mapping[str, str]) -> TrainingSource:
        trainer = entry_point(spec["train"], "model.source.train")
        module = sys.modules[spec["train"].partition(":")[0]]
        path = Path(module.__file__ or ".").parent / AUTHORED_CARD
        return cls(spec, trainer, authored_card(path), path)

    @property
    def task(self) -> str:
        return str(self.card["task"])

    @property
    def classifier(self) -> bool:
        return self.task != REGRESSION

    @property
    def label_names(self) -> list[str]:
        labels = self.card.get("labels") or {}
        return [str(labels[str(i)]) for i in range(len(labels))]

    @property
    def classes(self) -> int | None:
        """The card's classes (labels 0..classes-1), None for a regressor: the labels a snapshot may hold."""
        return len(self.label_names) if self.classifier else None

    @property
    def features_description(self) -> str:
        """The authored feature_schema.description, or one naming the model."""
        authored = (self.card.get("feature_schema") or {}).get("description")
        return str(authored or f"Input features of {self.card['model_name']}, in model input order.")

    @property
    def training(self) -> dict[str, Any]:
        return dict(self.card.get("training") or {})

    @property
    def seed(self) -> int:
        return int(self.training.get("seed", SEED))

    @property
    def holdout_fraction(self) -> float:
        return float(self.training.get("holdout_fraction", HOLDOUT_FRACTION))

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.training.get("hyperparameters") or {})

    def data(self) -> Data:
        spec = self.spec["data"]
        if is_csv_source(spec):
            names, x, y = read_csv_data(spec, self.task, str((self.card.get("target") or {}).get("name", "")))
            return check_data((names, x, y), self, spec)
        loader = entry_point(spec, "model.source.data")
        try:
            loaded = loader()
        except Exception as error:  # the user's loader
            raise BuildInputError(f"model.source.data {spec!r} failed: {type(error).__name__}: {error}") from error
        return check_data(loaded, self, f"python:{spec}")

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int, hyperparameters: Mapping[str, Any]) -> Any:
        try:
            return self.trainer(x, y, seed=seed, hyperparameters=dict(hyperparameters))
        except Exception as error:  # the user's training code
            raise BuildInputError(
                f"model.source.train {self.spec['train']!r} failed: {type(error).__name__}: {error}"
            ) from error


# A stand-in schema so the authored card is checked (labels, target, acceptance) before any training.
_PLACEHOLDER_SCHEMA = {"features": [{"name": "x", "minimum": 0, "maximum": 1}], "max_batch_rows": 1}


def authored_card(path: Path) -> dict[str, Any]:
    """The authored part of a model card (model_card.json beside the train module), checked."""
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise BuildInputError(
            f"{path} is missing: the model card's authored part sits beside the train module"
        ) from None
    except (OSError, ValueError) as error:
        raise BuildInputError(f"{path}: not readable JSON: {error}") from None
    if not isinstance(card, dict):
        raise BuildInputError(f"{path}: must be a JSON object")
    if card.get("task") not in TASKS:
        raise BuildInputError(f"{path}: model card field 'task': must be one of {', '.join(TASKS)}")
    try:
        ModelCard.from_dict({**card, "feature_schema": _PLACEHOLDER_SCHEMA}, str(path))
    except CardError as error:
        raise BuildInputError(f"{path}: {error}") from None
    check_training(card.get("training", {}), path)
    authored = card.get("feature_schema", {})
    if not isinstance(authored, dict) or set(authored) - {"description"}:
        raise BuildInputError(
            f"{path}: model card field 'feature_schema' is generated by the build; only its description is authored"
        )
    return card


def check_training(training: Any, path: Path) -> None:
    if not isinstance(training, dict):
        raise BuildInputError(f"{path}: model card field 'training' must be an object")
    seed = training.get("seed", SEED)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise BuildInputError(f"{path}: model card field 'training.seed' must be a non-negative integer")
    fraction = training.get("holdout_fraction", HOLDOUT_FRACTION)
    if not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise BuildInputError(f"{path}: model card field 'training.holdout_fraction' must be in (0, 1)")
    if not isinstance(training.get("hyperparameters", {}), dict):
        raise BuildInputError(f"{path}: model card field 'training.hyperparameters' must be an object")


# ---- the data -----------------------------------------------------------------------------------------------
def read_csv_bytes(uri: str) -> bytes:
    if uri.startswith("s3://"):
        import boto3

        bucket, _, key = uri[len("s3://") :].partition("/")
        try:
            return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]
        except Exception as error:  # botocore's errors
            raise BuildInputError(f"model.source.data {uri}: cannot read: {error}") from None
    try:
        return Path(uri).read_bytes()
    except OSError as error:
        raise BuildInputError(f"model.source.data {uri}: cannot read: {error}") from None


def read_csv_data(uri: str, task: str, target: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A CSV with a header: `label` (classifiers) or the target's name (regression), every other column a feature
    in model input order."""
    column = target if task == REGRESSION else "label"
    text = read_csv_bytes(uri).decode("utf-8-sig")
    lines = [line for line in text.splitlines() if line.strip()]
    header = [cell.strip() for cell in lines[0].split(",")] if lines else []
    if column not in header:
        raise BuildInputError(f"model.source.data {uri}: the header has no {column!r} column")
    cells = [line.split(",") for line in lines[1:]]
    for number, row in enumerate(cells, start=2):
        if len(row) != len(header):
            raise BuildInputError(f"model.source.data {uri}:{number}: {len(row)} cells, the header has {len(header)}")
    try:
        rows = np.array([[float(cell) for cell in row] for row in cells], dtype=np.float64).reshape(-1, len(header))
    except ValueError as error:
        raise BuildInputError(f"model.source.data {uri}: a cell is not a number ({error})") from None
    at = header.index(column)
    names = header[:at] + header[at + 1 :]
    return names, np.delete(rows, at, axis=1), rows[:, at]


def check_data(loaded: Any, source: TrainingSource, uri: str) -> Data:
    """The loader's (names, features, labels or targets), checked against the card; errors name the problem."""
    where = f"model.source.data {source.spec['data']!r}"
    if not isinstance(loaded, tuple | list) or len(loaded) != 3:
        raise BuildInputError(f"{where} must return (feature names, features, labels or targets)")
    names, x, y = loaded
    names = [str(name) for name in names]
    try:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise BuildInputError(f"{where}: features and labels must be numbers ({error})") from None
    if x.ndim != 2 or x.shape[1] != len(names):
        raise BuildInputError(f"{where}: features must be [rows, {len(names)}] (one column per name), not {x.shape}")
    if y.shape != (x.shape[0],):
        raise BuildInputError(f"{where}: labels or targets must be [{x.shape[0]}] (one per row), not {y.shape}")
    if len(set(names)) != len(names) or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", n) for n in names):
        raise BuildInputError(f"{where}: feature names must be unique identifiers (letters, digits, _): {names}")
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        row, column = bad[0]
        raise BuildInputError(f"{where}: feature {names[column]!r} of row {row} is {x[row, column]} (not finite)")
    if not np.isfinite(y).all():
        raise BuildInputError(f"{where}: row {int(np.argmin(np.isfinite(y)))} has a label or target that is not finite")
    if source.classifier:
        y = check_labels(y, source.label_names, where)
    return Data(names, x, y, uri)


def check_labels(y: np.ndarray, label_names: list[str], where: str) -> np.ndarray:
    classes = len(label_names)
    if not np.all(y == np.round(y)) or y.min() < 0 or y.max() >= classes:
        raise BuildInputError(f"{where}: labels must be class indexes 0..{classes - 1} (the card's labels)")
    labels = y.astype(np.int64)
    counts = np.bincount(labels, minlength=classes)
    thin = [f"{i} ({label_names[i]}): {int(counts[i])}" for i in range(classes) if counts[i] < 2]
    if thin:
        raise BuildInputError(
            f"{where}: every class of the card needs at least 2 rows to train and be held out; "
            f"found {len(np.flatnonzero(counts))} of {classes} classes; too few rows for {', '.join(thin)}"
        )
    return labels


def split(data: Data, fraction: float, seed: int, classifier: bool) -> tuple[np.ndarray, ...]:
    """The holdout: stratified by class for classifiers, a plain random split for regression."""
    try:
        return tuple(
            train_test_split(
                data.x, data.y, test_size=fraction, stratify=data.y if classifier else None, random_state=seed
            )
        )
    except ValueError as error:
        raise BuildInputError(f"cannot hold out {fraction} of {len(data.y)} rows: {error}") from None


# ---- the feature schema -------------------------------------------------------------------------------------
def _round_outward(value: float, quantum: float, up: bool) -> float:
    steps = math.ceil(value / quantum) if up else math.floor(value / quantum)
    digits = max(0, -math.floor(math.log10(quantum)))
    return round(steps * quantum, digits)


def feature_schema(
    names: list[str], x_train: np.ndarray, description: str, task: str = BINARY, label_names: Sequence[str] = ()
) -> dict[str, Any]:
    """The card's feature_schema: names in model input order, accepted ranges from the training rows."""
    features = []
    for name, column in zip(names, x_train.T, strict=True):
        low, high = float(column.min()), float(column.max())
        # A constant column still needs a range that holds its value: widen by its magnitude (or 1) instead.
        span = high - low or max(abs(low), 1.0)
        quantum = 10.0 ** (math.floor(math.log10(span)) - 3)
        minimum = low - RANGE_MARGIN * span
        if low >= 0:  # a feature never negative in training (a measurement) is not accepted negative
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
        "description": description,
        "range_rule": f"training min/max widened by {RANGE_MARGIN} x training span per side, "
        "floored at 0 for non-negative features, rounded outward",
        "max_batch_rows": max_batch_rows(names, task, label_names),
        "features": features,
    }


# ---- retraining snapshots -----------------------------------------------------------------------------------
def _split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int, classifier: bool) -> tuple[np.ndarray, ...]:
    """train_test_split of one source; a classifier's is stratified whenever each side can hold every class."""
    if len(y) < 2:  # too few to split: a lone fresh label is worth more as evidence than as training
        return x[:0], x, y[:0], y
    stratify = None
    if classifier:
        test = math.ceil(len(y) * fraction)
        classes, counts = np.unique(y, return_counts=True)
        stratify = y if counts.min() >= 2 and min(test, len(y) - test) >= len(classes) else None
    return tuple(train_test_split(x, y, test_size=fraction, stratify=stratify, random_state=seed))


@dataclass(frozen=True)
class SplitSnapshot:
    """A snapshot split per source: training rows, holdout rows, and how many holdout rows each source gave."""

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    holdout_by_source: dict[str, int]


def split_snapshot(snapshot: snapshots.Snapshot, fraction: float, seed: int, classifier: bool = True) -> SplitSnapshot:
    """Each source holds out `fraction` of its own rows, so the holdout always has fresh labels when the snapshot
    has any. A snapshot of the source's rows alone splits exactly as the default build does."""
    parts = {source: _split(*snapshot.part(source), fraction, seed, classifier) for source in snapshots.SOURCES}
    present = [source for source in snapshots.SOURCES if len(parts[source][2]) + len(parts[source][3])]
    return SplitSnapshot(
        np.vstack([parts[s][0] for s in present]),
        np.vstack([parts[s][1] for s in present]),
        np.concatenate([parts[s][2] for s in present]),
        np.concatenate([parts[s][3] for s in present]),
        {source: len(parts[source][3]) for source in snapshots.SOURCES},
    )


def next_minor(version: str) -> str:
    """1.0.0 -> 1.1.0 (a pre-release or build suffix is dropped)."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)([-+][\w.]+)?", version)
    if not match:
        raise BuildInputError(f"the parent's model_version {version!r} is not a version")
    return f"{match[1]}.{int(match[2]) + 1}.0"


def next_patch(version: str) -> str:
    """1.1.0 -> 1.1.1: the live model's data, a model the code now trains differently (a pushed code change)."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)([-+][\w.]+)?", version)
    if not match:
        raise BuildInputError(f"the live model_version {version!r} is not a version")
    return f"{match[1]}.{match[2]}.{int(match[3]) + 1}"


def rebuild_version(live: dict[str, Any], onnx_sha256: str) -> tuple[str, bool]:
    """A push build on the live model's data: (version, whether it is the live model again). The same ONNX graph
    keeps the live version (a code-only change that leaves the model alone is not a new model); another graph
    from the same data is the live version's next patch (data moves minor versions: retraining runs)."""
    version = str(live.get("model_version"))
    if onnx_sha256 == live.get("content_sha256"):
        return version, True
    return next_patch(version), False


def parameters(seed: int, holdout_fraction: float, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    return {"seed": seed, "holdout_fraction": holdout_fraction, "hyperparameters": dict(hyperparameters)}


def source_snapshot(data: Data, contract: FeatureContract) -> snapshots.Snapshot:
    """The snapshot of the source's own rows (those the contract accepts): the dataset of every build without one,
    so its content hash is what a retraining snapshot of the same rows hashes to."""
    inside = contract.inside(data.x)
    part = snapshots.Part("base", data.x[inside], data.y[inside], {"uri": data.uri})
    return snapshots.assemble(data.names, [part], snapshots.Checks())


def parent_dataset(
    parent: dict[str, Any], contract: FeatureContract, source: TrainingSource
) -> tuple[str, dict[str, Any]]:
    """(dataset content hash, parameters) the parent was trained with. A parent without lineage (older builds) is
    a default build: the source's dataset, the default holdout and the card's hyperparameters."""
    lineage = parent.get("lineage")
    if lineage is None:
        params = parameters(int(parent.get("seed", source.seed)), source.holdout_fraction, source.hyperparameters)
        return source_snapshot(source.data(), contract).content_sha256, params
    try:
        return str(lineage["dataset"]["content_sha256"]), dict(lineage["parameters"])
    except (KeyError, TypeError):
        raise BuildInputError("the parent's lineage has no dataset.content_sha256 or parameters") from None


def check_changed(
    parent: dict[str, Any],
    snapshot_sha256: str,
    params: dict[str, Any],
    contract: FeatureContract,
    source: TrainingSource,
) -> None:
    """Raise DatasetUnchanged when the retrained model would be the parent again (same data, same parameters)."""
    parent_sha256, parent_params = parent_dataset(parent, contract, source)
    if parent_sha256 == snapshot_sha256 and parent_params == params:
        raise DatasetUnchanged(str(parent.get("model_version")))


# ---- ONNX -----------------------------------------------------------------------------------------------------
def to_onnx(model: Any, width: int, name: str, classifier: bool) -> bytes:
    """A fitted scikit-learn estimator as ONNX: one float input [N, width]; a classifier's label and probabilities
    as plain tensors (ZipMap off), which is what the container reads."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    try:
        graph = convert_sklearn(
            model,
            name=name,
            initial_types=[("input", FloatTensorType([None, width]))],
            options={id(final): {"zipmap": False}} if classifier else None,
            target_opset=ONNX_OPSET,
        )
    except Exception as error:  # skl2onnx raises many types for an estimator it cannot convert
        raise BuildInputError(
            f"model.source.train returned a {type(model).__name__} that skl2onnx cannot export: {error} "
            "(return ONNX bytes instead)"
        ) from None
    return graph.SerializeToString(deterministic=True)  # type: ignore[no-any-return]


def exported(model: Any, width: int, name: str, classifier: bool) -> tuple[bytes, str | None]:
    """(ONNX bytes, a description of the algorithm when the build can tell it)."""
    if isinstance(model, bytes | bytearray):
        return bytes(model), None
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString(deterministic=True), None
    if not hasattr(model, "predict"):
        raise BuildInputError(
            f"model.source.train returned a {type(model).__name__}: "
            "return a fitted scikit-learn estimator or ONNX bytes"
        )
    steps = [step for _, step in model.steps] if isinstance(model, Pipeline) else [model]
    algorithm = " + ".join(type(step).__name__ for step in steps) + " (scikit-learn), exported with skl2onnx"
    return to_onnx(model, width, name, classifier), algorithm


def _elem_type(value: Any) -> int:
    return int(value.type.tensor_type.elem_type)


def check_onnx(onnx_bytes: bytes, task: str, width: int, where: str = "model.onnx") -> dict[str, Any]:
    """The card's `onnx` block of a graph that meets the package contract, or BuildInputError naming the breach:
    one float input [N, width]; classifiers `label` (int64) then `probabilities` (float); regressors one float."""
    try:
        model = onnx.load_from_string(onnx_bytes)
        onnx.checker.check_model(model)
    except Exception as error:  # protobuf's and the checker's errors
        raise BuildInputError(f"{where} is not a valid ONNX model: {error}") from None
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1 or _elem_type(inputs[0]) != ONNX_FLOAT:
        raise BuildInputError(f"{where}: needs exactly one float tensor input [N, features], has {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 2 or (dims[1].HasField("dim_value") and dims[1].dim_value != width):
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in dims]
        raise BuildInputError(
            f"{where}: input {inputs[0].name!r} has shape {shape}, the card's features need [N, {width}]"
        )
    outputs = list(model.graph.output)
    floats = (ONNX_FLOAT, ONNX_DOUBLE)
    if task == REGRESSION:
        ok, expected = len(outputs) == 1 and _elem_type(outputs[0]) in floats, "one float output (the value)"
    else:
        ok = len(outputs) >= 2 and _elem_type(outputs[0]) == ONNX_INT64 and _elem_type(outputs[1]) in floats
        expected = "outputs label (int64) then probabilities (float), ZipMap off"
    if not ok:
        raise BuildInputError(f"{where}: a {task} model needs {expected}; has {[o.name for o in outputs]}")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    names = [o.name for o in outputs[: 1 if task == REGRESSION else 2]]
    return {"file": "model.onnx", "input": inputs[0].name, "outputs": names, "opset": opset}


def holdout_metrics(
    onnx_bytes: bytes, x_test: np.ndarray, y_test: np.ndarray, task: str = BINARY, label_names: list[str] | None = None
) -> dict[str, Any]:
    """The card's holdout_metrics: evaluation.metrics of the exported graph (what ships), not the sklearn object."""
    names = label_names if label_names is not None else ["0", "1"]
    predicted = evaluation.predictions(onnx_bytes, x_test, task)
    if task != REGRESSION and predicted["probabilities"].shape[1:] != (len(names),):
        raise BuildInputError(
            f"model.onnx gives {predicted['probabilities'].shape[1:]} probabilities per row; the card has "
            f"{len(names)} labels"
        )
    return evaluation.metrics(task, y_test, predicted, names)


# ---- files ----------------------------------------------------------------------------------------------------
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


def holdout_csv(y_test: np.ndarray, x_test: np.ndarray, classifier: bool) -> bytes:
    """Label (int) or target (float repr) first, then the features."""
    first = [b"%d" % int(v) for v in y_test] if classifier else [repr(float(v)).encode() for v in y_test]
    lines = csv_bytes(x_test).splitlines(keepends=True)
    return b"".join(b"%s,%s" % (head, line) for head, line in zip(first, lines, strict=True))


def scores_csv(scores: np.ndarray) -> bytes:
    """baseline_predictions.csv: the server's 6 decimals, one column per score."""
    return b"".join(b",".join(b"%.6f" % value for value in row) + b"\n" for row in scores)


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


BASELINE_PREDICTIONS_COLUMNS = {
    BINARY: "P(label = positive_label) of each baseline.csv row",
    "multiclass_classification": "the probability of each class, in label order, of each baseline.csv row",
    REGRESSION: "the predicted value of each baseline.csv row",
}


def file_descriptions(task: str) -> dict[str, Any]:
    first = "target value" if task == REGRESSION else "label"
    return {
        "baseline_csv": {"header": False, "columns": "features in feature_schema order"},
        "holdout_csv": {"header": False, "columns": f"{first}, then features in feature_schema order"},
        "baseline_predictions_csv": {"header": False, "columns": BASELINE_PREDICTIONS_COLUMNS[task]},
    }


def package_files(
    onnx_bytes: bytes, card: Mapping[str, Any], baseline: np.ndarray, holdout: bytes, scores: np.ndarray
) -> dict[str, bytes]:
    """The package's files by name (README "Bring your own model")."""
    card_bytes = orjson.dumps(card, option=JSON_OPTIONS)
    return {
        "model.onnx": onnx_bytes,
        CARD_FILE: card_bytes,
        "model.tar.gz": deterministic_tar_gz({"model.onnx": onnx_bytes, CARD_FILE: card_bytes}),
        "baseline.csv": csv_bytes(baseline),
        "baseline_predictions.csv": scores_csv(scores),
        "holdout.csv": holdout,
    }


def write_files(out: Path, files: Mapping[str, bytes]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (out / name).write_bytes(content)


def write_contract(contract_dir: Path, schema: Mapping[str, Any]) -> None:
    contract_dir.mkdir(parents=True, exist_ok=True)
    (contract_dir / "feature_schema.json").write_bytes(orjson.dumps(schema, option=JSON_OPTIONS))


def load_snapshot(path: Path, contract: FeatureContract) -> snapshots.Snapshot:
    try:
        snapshot = snapshots.load(path)
    except snapshots.SnapshotError as error:
        raise BuildInputError(str(error)) from None
    if snapshot.feature_names != contract.names:
        raise BuildInputError(f"{path}: the snapshot's columns are not the feature contract's (rebuild the snapshot)")
    return snapshot


def distribution(labels: np.ndarray, classifier: bool) -> dict[str, Any]:
    if classifier:
        return {"label_distribution": snapshots.label_distribution(labels)}
    if not labels.size:
        return {}
    return {"target_summary": {"min": float(labels.min()), "max": float(labels.max()), "mean": float(labels.mean())}}


def lineage(
    snapshot: snapshots.Snapshot,
    split: SplitSnapshot,
    commit: str,
    params: dict[str, Any],
    parent: str | None,
    classifier: bool = True,
) -> dict[str, Any]:
    """What the model came from: code, data (by content hash), parameters, parent version, holdout make-up."""
    manifest = snapshot.manifest
    return {
        "code_commit": commit,
        "dataset": {
            "uri": manifest.get("snapshot_uri"),
            "content_sha256": snapshot.content_sha256,
            "rows": int(snapshot.labels.size),
            **distribution(snapshot.labels, classifier),
            "sources": [
                {key: source[key] for key in ("source", "rows", "uri", "capture_uri", "labels_uri") if key in source}
                for source in manifest.get("sources", [])
            ],
        },
        "parameters": params,
        "parent_version": parent,
        "holdout": {"rows": int(split.y_test.size), "by_source": split.holdout_by_source},
    }


# ---- the build ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trained:
    """What a build trained on and held out, and the lineage of that data."""

    names: list[str]
    schema: dict[str, Any]
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    lineage: dict[str, Any]


def train_on_source(source: TrainingSource, params: dict[str, Any], commit: str) -> Trained:
    """The default build: the source's data, a stratified (classifiers) or plain (regression) holdout."""
    data = source.data()
    x_train, x_test, y_train, y_test = split(data, params["holdout_fraction"], params["seed"], source.classifier)
    schema = feature_schema(data.names, x_train, source.features_description, source.task, source.label_names)
    snapshot = source_snapshot(data, FeatureContract.from_schema(schema, source.classes))
    snapshot = snapshots.Snapshot(
        snapshot.feature_names,
        snapshot.sources,
        snapshot.features,
        snapshot.labels,
        snapshot.content_sha256,
        {**snapshot.manifest, "snapshot_uri": data.uri},
    )
    held = SplitSnapshot(x_train, x_test, y_train, y_test, {"base": len(y_test), "captured": 0})
    # kind "source": trained on the model source's own data, which a rebuild loads again (no snapshot to fetch).
    trail = {"kind": "source", **lineage(snapshot, held, commit, params, None, source.classifier)}
    return Trained(data.names, schema, x_train, x_test, y_train, y_test, trail)


def train_on_snapshot(
    source: TrainingSource,
    params: dict[str, Any],
    commit: str,
    dataset: Path,
    contract_dir: Path,
    parent: dict[str, Any] | None,
) -> Trained:
    """A retraining build: the snapshot, split per source, under the committed feature contract."""
    try:
        schema = load_feature_schema(contract_dir / "feature_schema.json")
    except (OSError, ValueError) as error:
        raise BuildInputError(f"cannot read the feature contract in {contract_dir}: {error}") from None
    contract = FeatureContract.from_schema(schema, source.classes)
    snapshot = load_snapshot(dataset, contract)
    if parent is not None:
        check_changed(parent, snapshot.content_sha256, params, contract, source)
    held = split_snapshot(snapshot, params["holdout_fraction"], params["seed"], source.classifier)
    if source.classifier:
        check_labels(np.concatenate([held.y_train, held.y_test]), source.label_names, f"snapshot {dataset}")
    parent_version = None if parent is None else str(parent.get("model_version"))
    trail = {"kind": "snapshot", **lineage(snapshot, held, commit, params, parent_version, source.classifier)}
    return Trained(list(contract.names), schema, held.x_train, held.x_test, held.y_train, held.y_test, trail)


def build(
    out: Path,
    seed: int | None = None,
    version: str | None = None,
    commit: str | None = None,
    contract_dir: Path = CONTRACT_DIR,
    *,
    source: Mapping[str, Any] | None = None,
    dataset: Path | None = None,
    parent: dict[str, Any] | None = None,
    holdout_fraction: float | None = None,
    rebuild_of: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train, export and package the model of `source` (default: cdk.json's); return the card written.

    Seed, holdout fraction and hyperparameters default to the card's `training`. Without `dataset`, the default
    build (the source's data, the card's version). With it, a retraining build: raises DatasetUnchanged (writing
    nothing) when the snapshot is the `parent`'s data and parameters. `rebuild_of` (the live model's card;
    exclusive with `parent`): a push build on the live model's data (`dataset`, its snapshot, or none when the
    live model is a default build); its version is `rebuild_version`. A `{"package": ...}` source is copied after
    its checks (model_container/package.py) and takes none of the training arguments."""
    spec = check_source(configured_source() if source is None else source)
    if "package" in spec:
        if any(v is not None for v in (seed, version, dataset, parent, holdout_fraction, rebuild_of)):
            raise BuildInputError("a pre-built model.source.package is not trained: no seed, version or dataset")
        from model_container import package

        return package.install(spec["package"], out, contract_dir)
    if rebuild_of is not None and (parent is not None or version is not None):
        raise BuildInputError("a rebuild of the live model takes neither --parent nor --version")
    if dataset is None and (parent is not None or holdout_fraction is not None):
        raise BuildInputError("--parent and --holdout-fraction need --dataset (a retraining build)")
    trainer = TrainingSource.resolve(spec)
    commit = commit or git_commit()
    params = parameters(
        trainer.seed if seed is None else seed,
        trainer.holdout_fraction if holdout_fraction is None else holdout_fraction,
        trainer.hyperparameters,
    )
    if dataset is None:
        trained = train_on_source(trainer, params, commit)
    else:
        trained = train_on_snapshot(trainer, params, commit, dataset, contract_dir, parent)
        if parent is not None:
            version = version or next_minor(str(parent.get("model_version")))
    model = trainer.fit(trained.x_train, trained.y_train, params["seed"], params["hyperparameters"])
    onnx_bytes, algorithm = exported(model, len(trained.names), str(trainer.card["model_name"]), trainer.classifier)
    onnx_block = check_onnx(onnx_bytes, trainer.task, len(trained.names))
    sha256 = hashlib.sha256(onnx_bytes).hexdigest()
    if rebuild_of is not None:
        version = rebuild_lineage(trained.lineage, rebuild_of, sha256)
    card = {
        **trainer.card,
        "model_version": version or str(trainer.card["model_version"]),
        "training": params,
        "seed": params["seed"],
        "training_commit": commit,
        "algorithm": trainer.card.get("algorithm") or algorithm or f"ONNX graph from {spec['train']}",
        "content_sha256": sha256,
        "onnx": onnx_block,
        "feature_schema": trained.schema,
        "holdout_metrics": holdout_metrics(
            onnx_bytes, trained.x_test, trained.y_test, trainer.task, trainer.label_names
        ),
        "training_rows": len(trained.y_train),
        "lineage": trained.lineage,
        **file_descriptions(trainer.task),
    }
    try:
        ModelCard.from_dict(card, "the built model card")
    except CardError as error:
        raise BuildInputError(f"{trainer.card_path}: {error}") from None
    scores = evaluation.baseline_scores(onnx_bytes, trained.x_train, trainer.task)
    holdout = holdout_csv(trained.y_test, trained.x_test, trainer.classifier)
    write_files(out, package_files(onnx_bytes, card, trained.x_train, holdout, scores))
    if dataset is None:  # a retraining build keeps the contract it read
        write_contract(contract_dir, trained.schema)
    return card


def rebuild_lineage(trail: dict[str, Any], live: dict[str, Any], onnx_sha256: str) -> str:
    """A push build's version; the same model keeps its own parent, another one descends from the live model."""
    version, identical = rebuild_version(live, onnx_sha256)
    live_lineage = live.get("lineage") or {}
    trail["parent_version"] = live_lineage.get("parent_version") if identical else live.get("model_version")
    trail["rebuild_of"] = {"version": live.get("model_version"), "identical": identical}
    return version


def train(seed: int | None = None) -> tuple[Any, list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(fitted model, names, x_train, x_test, y_train, y_test) of the configured source's default build, for
    tools that need the framework's object (the benchmark's sklearn peer)."""
    source = TrainingSource.resolve(check_source(configured_source()))
    data = source.data()
    seed = source.seed if seed is None else seed
    x_train, x_test, y_train, y_test = split(data, source.holdout_fraction, seed, source.classifier)
    return source.fit(x_train, y_train, seed, source.hyperparameters), data.names, x_train, x_test, y_train, y_test


SAGEMAKER_ROOT = Path("/opt/ml")
CHECKPOINT_DONE = "build-complete"


def sagemaker_train(root: Path = SAGEMAKER_ROOT) -> int:
    """The build as a SageMaker training job runs it: `docker run IMAGE train` ("How Amazon SageMaker AI Runs Your
    Training Image"). Channels are directories under input/data/ (`training`: the snapshot; `parent`: the live
    model's metadata.json, optional); hyperparameters are strings in input/config/hyperparameters.json (seed,
    holdout_fraction, commit, version, source: the model.source as JSON). The build goes to model/, which SageMaker
    packs as the job's ModelArtifacts, and a failure's reason to output/failure, which DescribeTrainingJob returns
    as FailureReason ("How Amazon SageMaker AI Processes Training Output"). It is built in checkpoints/ first,
    which SageMaker syncs with CheckpointConfig.S3Uri and restores when a spot job restarts ("Checkpoints in
    Amazon SageMaker AI"): a restarted job finds the finished build there and copies it instead of training
    again."""
    config = root / "input" / "config" / "hyperparameters.json"
    parent_file = root / "input" / "data" / "parent" / "metadata.json"
    checkpoint = root / "checkpoints" / "build"
    try:
        hyperparameters = json.loads(config.read_text()) if config.is_file() else {}
        if not (checkpoint / CHECKPOINT_DONE).is_file():
            shutil.rmtree(checkpoint, ignore_errors=True)  # an interrupted build is started again
            build(
                checkpoint,
                int(hyperparameters["seed"]) if "seed" in hyperparameters else None,
                hyperparameters.get("version"),
                hyperparameters.get("commit", "unknown"),
                source=json.loads(hyperparameters["source"]) if "source" in hyperparameters else None,
                dataset=root / "input" / "data" / "training",
                parent=json.loads(parent_file.read_text()) if parent_file.is_file() else None,
                holdout_fraction=(
                    float(hyperparameters["holdout_fraction"]) if "holdout_fraction" in hyperparameters else None
                ),
            )
            (checkpoint / CHECKPOINT_DONE).write_text("done\n")
        (root / "model").mkdir(parents=True, exist_ok=True)
        for path in sorted(checkpoint.iterdir()):
            if path.name != CHECKPOINT_DONE:
                shutil.copyfile(path, root / "model" / path.name)
    except (BuildInputError, DatasetUnchanged, OSError, ValueError) as error:
        (root / "output").mkdir(parents=True, exist_ok=True)
        (root / "output" / "failure").write_text(f"{type(error).__name__}: {error}"[:1024])
        print(f"build_model train: {error}", file=sys.stderr)
        return EXIT_UNCHANGED if isinstance(error, DatasetUnchanged) else EXIT_UNUSABLE
    return 0


def read_parent(path: Path) -> dict[str, Any]:
    try:
        parent: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BuildInputError(f"--parent {path}: {error}") from None
    if not parent.get("model_version"):
        raise BuildInputError(f"--parent {path}: not a build's metadata.json (no model_version)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "dist")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--source", help=f"model.source as JSON (default: cdk.json {SOURCE_KEY})")
    chosen.add_argument("--example", choices=EXAMPLES, help="a bundled example's source (model_container/models)")
    parser.add_argument("--seed", type=int, default=None, help="default: the card's training.seed")
    parser.add_argument(
        "--version", default=None, help="default: the card's model_version, or the --parent's next minor"
    )
    parser.add_argument("--commit", default=None, help="training commit; default: git rev-parse HEAD")
    parser.add_argument("--contract-dir", type=Path, default=CONTRACT_DIR)
    parser.add_argument("--dataset", type=Path, help="snapshot directory (python -m model_container.dataset build)")
    parser.add_argument("--parent", type=Path, help="the live model's metadata.json: this is a retraining build")
    parser.add_argument("--holdout-fraction", type=float, default=None, help="of each source's rows (with --dataset)")
    parser.add_argument(
        "--rebuild-of", type=Path, help="the live model's metadata.json: a push build on its data (scripts/retrain.py)"
    )
    return parser


def chosen_source(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.example:
        return example_source(args.example)
    if args.source is None:
        return None
    try:
        return dict(json.loads(args.source))
    except (ValueError, TypeError) as error:
        raise BuildInputError(f"--source must be a JSON object ({error})") from None


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["train"]:  # SageMaker's training container command
        return sagemaker_train()
    args = build_parser().parse_args(arguments)
    try:
        source = chosen_source(args)
        check_in_image(check_source(configured_source() if source is None else source))
        parent = read_parent(args.parent) if args.parent else None
        live = read_parent(args.rebuild_of) if args.rebuild_of else None
        metadata = build(
            args.out,
            args.seed,
            args.version,
            args.commit,
            args.contract_dir,
            source=source,
            dataset=args.dataset,
            parent=parent,
            holdout_fraction=args.holdout_fraction,
            rebuild_of=live,
        )
    except DatasetUnchanged as unchanged:
        print(f"build_model: {unchanged}", file=sys.stderr)
        return EXIT_UNCHANGED
    except BuildInputError as error:
        print(f"build_model: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    summary = {
        "out": str(args.out),
        "model_name": metadata["model_name"],
        "model_version": metadata["model_version"],
        "content_sha256": metadata["content_sha256"],
        "holdout_metrics": metadata["holdout_metrics"],
    }
    trail = metadata.get("lineage") or {}
    if trail:
        summary |= {"dataset_sha256": trail["dataset"]["content_sha256"], "parent_version": trail["parent_version"]}
    print(orjson.dumps(summary).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where snapshot rows come from: the model source's own data (`model.source.data` of cdk.json's
ml-platform.defaults.model.source), CSV files under `training.dataset_uri`, and captured traffic joined with its
ground-truth labels by the drift engine.

Labels follow the configured model's card: a classifier's are class indexes 0..classes-1, a regressor's targets
any finite number (FeatureContract.classes; None for regression)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_container.dataset.snapshot import Part, SnapshotError

LABEL_COLUMN = "label"
CONFIGURED: Any = object()  # FeatureContract.from_schema's default: the classes of the configured model source


def safe_identifier(name: str) -> str:
    """'mean radius' -> 'mean_radius'."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def model_source() -> Any:
    """The configured model source (build_model.TrainingSource of cdk.json's model.source): retraining trains
    the model the platform serves, so its data and its card's task come from there. A pre-built package has no
    training entry point to retrain with."""
    from model_container import build_model

    spec = build_model.check_source(build_model.configured_source())
    if "package" in spec:
        raise SnapshotError(
            f"{build_model.SOURCE_KEY} is a pre-built package ({spec['package']}): retraining needs a training "
            "entry point ({'train': ..., 'data': ...})"
        )
    try:
        return build_model.TrainingSource.resolve(spec)
    except build_model.BuildInputError as error:
        raise SnapshotError(str(error)) from None


def configured_classes() -> int | None:
    """The configured model's classes (its card's labels), None for a regressor."""
    source = model_source()
    return len(source.label_names) if source.classifier else None


def bundled_dataset() -> tuple[list[str], np.ndarray, np.ndarray]:
    """(feature names, features, labels or targets) of the configured model source's own data."""
    data = _source_data()
    return list(data.names), data.x, data.y


def bundled_uri() -> str:
    """Where the configured model source's own data comes from (its Data.uri, e.g. python:package.module:load)."""
    return str(_source_data().uri)


_SOURCE_DATA: dict[str, Any] = {}


def _source_data() -> Any:
    from model_container import build_model

    key = json.dumps(build_model.configured_source(), sort_keys=True)
    if key not in _SOURCE_DATA:
        try:
            _SOURCE_DATA[key] = model_source().data()
        except build_model.BuildInputError as error:
            raise SnapshotError(str(error)) from None
    return _SOURCE_DATA[key]


def valid_label(label: Any, classes: int | None) -> bool:
    """A class index 0..classes-1 of a classifier, or a finite number (a regression target)."""
    if isinstance(label, bool) or not isinstance(label, int | float | np.integer | np.floating):
        return False
    if classes is None:
        return math.isfinite(float(label))
    return float(label).is_integer() and 0 <= int(label) < classes


def label_vector(labels: Sequence[Any], classes: int | None) -> np.ndarray:
    """int64 class indexes of a classifier, float64 targets of a regressor."""
    return np.array(labels, dtype=np.int64 if classes is not None else np.float64)


@dataclass(frozen=True)
class FeatureContract:
    """Feature order and accepted ranges of the API (model_container/contract/feature_schema.json).

    A retrained model keeps the contract of the model it replaces: the ranges are what the API accepts, so a
    row outside them could never reach the model and is left out of training."""

    names: tuple[str, ...]
    minimum: np.ndarray
    maximum: np.ndarray
    # The classes of the model's labels (0..classes-1); None: a regressor's targets.
    classes: int | None = 2

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any], classes: int | None = CONFIGURED) -> FeatureContract:
        """The contract of `schema`, labels as the configured model source's card says unless `classes` is given."""
        features = schema["features"]
        return cls(
            tuple(f["name"] for f in features),
            np.array([f["minimum"] for f in features], dtype=np.float64),
            np.array([f["maximum"] for f in features], dtype=np.float64),
            configured_classes() if classes is CONFIGURED else classes,
        )

    def inside(self, features: np.ndarray) -> np.ndarray:
        """Per row: every value within [minimum, maximum]."""
        return np.all((features >= self.minimum) & (features <= self.maximum), axis=1)


def split_s3_uri(uri: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not match:
        raise SnapshotError(f"{uri!r} is not an s3:// URI")
    return match[1], match[2]


# ---- the base dataset ---------------------------------------------------------------------------------------
def parse_base_csv(
    content: bytes, origin: str, names: Sequence[str], classes: int | None = 2
) -> tuple[np.ndarray, np.ndarray]:
    """A CSV with a header naming every contract feature and `label` (a class index 0..classes-1, or a
    regression target when `classes` is None), in any column order."""
    try:
        reader = csv.DictReader(io.StringIO(content.decode("utf-8-sig")))
        header = reader.fieldnames or []
    except UnicodeDecodeError as error:
        raise SnapshotError(f"{origin}: not UTF-8 text ({error})") from None
    missing = [name for name in [*names, LABEL_COLUMN] if name not in header]
    if missing:
        raise SnapshotError(f"{origin}: missing column(s) {', '.join(missing)}")
    rows, labels = [], []
    for number, record in enumerate(reader, start=2):
        try:
            values = [float(record[name]) for name in names]
            label = float(record[LABEL_COLUMN])
        except (TypeError, ValueError):
            raise SnapshotError(f"{origin}:{number}: a feature or the label is not a number") from None
        if not valid_label(label, classes) or not all(math.isfinite(v) for v in values):
            wanted = "a finite number" if classes is None else f"a class index 0..{classes - 1}"
            raise SnapshotError(f"{origin}:{number}: label must be {wanted} and features finite numbers")
        rows.append(values)
        labels.append(label)
    return np.array(rows, dtype=np.float64).reshape(-1, len(names)), label_vector(labels, classes)


def _s3_csv_objects(s3: Any, uri: str) -> Iterable[tuple[str, bytes, dict[str, Any]]]:
    bucket, prefix = split_s3_uri(uri)
    keys = sorted(
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if item["Key"].endswith(".csv")
    )
    for key in keys:
        response = s3.get_object(Bucket=bucket, Key=key)
        # The version read is part of the lineage: in a versioned bucket the same key can later hold other data.
        yield (
            f"s3://{bucket}/{key}",
            response["Body"].read(),
            {"key": key, "version_id": response.get("VersionId"), "etag": response.get("ETag", "").strip('"')},
        )


def _local_csv_files(directory: Path) -> Iterable[tuple[str, bytes, dict[str, Any]]]:
    for path in sorted(directory.glob("*.csv")):
        yield str(path), path.read_bytes(), {"key": path.name}


def base_part(uri: str | None, contract: FeatureContract, s3: Any = None) -> Part:
    """The configured dataset (CSV files under an s3:// prefix, or a local directory), or the model source's own."""
    if uri is None:
        names, bundled_features, bundled_labels = bundled_dataset()
        if tuple(names) != contract.names:
            raise SnapshotError(
                "the model source's data has other features than the feature contract's (run `make model`)"
            )
        return _within_contract("base", bundled_features, bundled_labels, contract, {"uri": bundled_uri()})
    objects = _s3_csv_objects(s3, uri) if uri.startswith("s3://") else _local_csv_files(Path(uri))
    features: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    described: list[dict[str, Any]] = []
    for origin, content, description in objects:
        rows, row_labels = parse_base_csv(content, origin, contract.names, contract.classes)
        features.append(rows)
        labels.append(row_labels)
        described.append({**description, "rows": len(row_labels)})
    if not described:
        raise SnapshotError(f"{uri}: no .csv files")
    return _within_contract(
        "base", np.vstack(features), np.concatenate(labels), contract, {"uri": uri, "objects": described}
    )


def _within_contract(
    source: str, features: np.ndarray, labels: np.ndarray, contract: FeatureContract, description: dict[str, Any]
) -> Part:
    inside = contract.inside(features)
    dropped = {"out_of_contract": int((~inside).sum())}
    return Part(source, features[inside], labels[inside], {**description, "dropped": dropped})


# ---- captured traffic with ground truth ---------------------------------------------------------------------
def labelled_records(records: Iterable[Sequence[Any]], labels: Any) -> tuple[int, list[tuple[Any, int | float]]]:
    """(captured rows, (captured row, label) pairs) by the drift engine's own join (ground_truth.record_labels:
    labels by inferenceId or eventId, a record's label list matched to its instances in order). Pairs come grouped
    by the model version that served them (versions sorted), in capture order within one. Training needs no
    served prediction, so a captured request without a response still joins."""
    from model_container.dataset import drift_engine as engine

    rows, by_version = 0, defaultdict(list)
    for record in records:
        rows += len(record)
        if record:
            by_version[engine.row_version(record[0])].extend(engine.record_labels(record[0].join_key, record, labels))
    # A label is the engine's Truth: an int when integer-valued (a class index), else a float (a target).
    return rows, [(row, label) for version in sorted(by_version) for row, label in by_version[version]]


def training_rows(
    pairs: Sequence[tuple[Any, int | float]], contract: FeatureContract
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Features in contract order (the drift engine's rows_to_matrix: lists by position, objects by name) and
    labels of the usable pairs, with a count of every reason a pair was left out."""
    from model_container.dataset import drift_engine as engine

    dropped: Counter[str] = Counter(schema_mismatch=0, incomplete=0, bad_label=0, out_of_contract=0)
    features, labels = [], []
    for row, label in pairs:
        matrix, mismatched = engine.rows_to_matrix([row], contract.names)
        if mismatched:
            dropped["schema_mismatch"] += 1
        elif np.isnan(matrix).any():
            dropped["incomplete"] += 1
        elif not valid_label(label, contract.classes):
            dropped["bad_label"] += 1
        elif not contract.inside(matrix)[0]:
            dropped["out_of_contract"] += 1
        else:
            features.append(matrix[0])
            labels.append(label)
    shape = (len(features), len(contract.names))
    return np.array(features, dtype=np.float64).reshape(shape), label_vector(labels, contract.classes), dict(dropped)


def captured_part(capture_uri: str, labels_uri: str, window: Any, contract: FeatureContract, s3: Any) -> Part:
    """Captured requests of `window` (SageMaker's {prefix}/yyyy/mm/dd/hh/ layout) that have ground-truth labels
    uploaded in the same window, read as the drift Lambda reads them (drift_engine.job); rows come grouped by
    the model version that served them (the engine's grouping, versions sorted), in capture order within one."""
    from model_container.dataset import drift_engine as engine

    capture_bucket, capture_prefix = split_s3_uri(capture_uri)
    labels_bucket, labels_prefix = split_s3_uri(labels_uri)
    capture_keys = engine.list_keys(s3, capture_bucket, window.hour_prefixes(capture_prefix))
    label_keys = engine.list_keys(s3, labels_bucket, window.hour_prefixes(labels_prefix))
    label_set = engine.parse_label_lines(engine.iter_lines(s3, labels_bucket, label_keys))
    stats = engine.CaptureStats()
    captured_rows, pairs = labelled_records(
        engine.iter_capture_records(engine.iter_lines(s3, capture_bucket, capture_keys), stats), label_set
    )
    features, labels, dropped = training_rows(pairs, contract)
    description = {
        "capture_uri": capture_uri,
        "labels_uri": labels_uri,
        "window": window.as_dict(),
        "capture_files": len(capture_keys),
        "label_files": len(label_keys),
        "captured_records": stats.records,
        "malformed_records": stats.malformed_records,
        "malformed_label_lines": label_set.malformed_lines,
        "captured_rows": captured_rows,
        "labelled_rows": len(pairs),
        "dropped": dropped,
    }
    return Part("captured", features, labels, description)

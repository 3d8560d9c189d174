"""Load a model version's feature schema and training baseline from S3, cached per container."""

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from drift_engine.payload_decoding import to_float

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


class BaselineNotFound(LookupError):
    """No baseline/metadata exists for a model version."""


@dataclass(frozen=True)
class FeatureSpec:
    """One schema feature with its allowed range (None = unbounded)."""

    name: str
    minimum: float | None
    maximum: float | None


@dataclass(frozen=True)
class Baseline:
    """Training distribution of one model version: features (rows x schema columns) and scores."""

    model_version: str
    features: tuple[FeatureSpec, ...]
    values: np.ndarray
    prediction_scores: np.ndarray | None
    content_hash: str | None

    @property
    def feature_names(self) -> list[str]:
        return [spec.name for spec in self.features]


def _bound(spec: Mapping[str, Any], *keys: str) -> float | None:
    for key in keys:
        if spec.get(key) is not None:
            return float(spec[key])
    return None


def parse_feature_schema(metadata: Mapping[str, Any]) -> tuple[FeatureSpec, ...]:
    """Read `feature_schema.features` (or `schema.features`, `features`): [{name, minimum, maximum}]."""
    container = metadata.get("feature_schema") or metadata.get("schema") or metadata
    features = container.get("features") if isinstance(container, Mapping) else None
    if not isinstance(features, list) or not features:
        raise ValueError("metadata has no feature list")
    return tuple(
        FeatureSpec(
            name=str(spec["name"]),
            minimum=_bound(spec, "minimum", "min"),
            maximum=_bound(spec, "maximum", "max"),
        )
        for spec in features
    )


def parse_baseline_csv(text: str, width: int) -> np.ndarray:
    """Header-less CSV, columns in schema order -> float matrix (NaN for empty cells)."""
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if rows and all(np.isnan(to_float(cell)) for cell in rows[0]):
        rows = rows[1:]  # tolerate an accidental header row
    matrix = np.array([[to_float(cell) for cell in row] for row in rows], dtype=float)
    if matrix.size == 0 or matrix.ndim != 2 or matrix.shape[1] != width:
        raise ValueError(f"baseline has shape {matrix.shape}, schema has {width} features")
    return matrix


def _read_text(s3: Any, bucket: str, key: str) -> str | None:
    try:
        return str(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8"))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _NOT_FOUND:
            return None
        raise


_cache: dict[tuple[str, str, str], Baseline] = {}


def clear_cache() -> None:
    _cache.clear()


def load_baseline(s3: Any, bucket: str, prefix: str, model_version: str) -> Baseline:
    """Read `{prefix}{version}/metadata.json`, `baseline.csv` and optional `baseline_predictions.csv`.

    Cached per Lambda container: a published version's baseline is immutable. Missing versions
    are not cached so a baseline uploaded later is picked up by the next run.
    """
    cache_key = (bucket, prefix, model_version)
    if cache_key in _cache:
        return _cache[cache_key]
    root = f"{prefix}{model_version}/"
    metadata_text = _read_text(s3, bucket, root + "metadata.json")
    baseline_text = _read_text(s3, bucket, root + "baseline.csv")
    if metadata_text is None or baseline_text is None:
        raise BaselineNotFound(f"s3://{bucket}/{root}")
    metadata = json.loads(metadata_text)
    features = parse_feature_schema(metadata)
    scores_text = _read_text(s3, bucket, root + "baseline_predictions.csv")
    scores = parse_baseline_csv(scores_text, 1)[:, 0] if scores_text else None
    baseline = Baseline(
        model_version=model_version,
        features=features,
        values=parse_baseline_csv(baseline_text, len(features)),
        prediction_scores=scores,
        content_hash=metadata.get("content_sha256"),  # the model build's name for it
    )
    _cache[cache_key] = baseline
    return baseline

"""Load the feature schema and training baseline of the model that served the traffic, cached per container.

Baselines are keyed on the model's content hash (scripts/publish_baseline.py): `{prefix}<content_sha256>/`
holds metadata.json, baseline.csv and baseline_predictions.csv, and `{prefix}_versions/<version>/<sha256>`
names every hash published under a version. A version alone is not enough (every default build is 1.0.0, and
a candidate's baseline is published before its deploy), so the serving model's hash comes from the release
history table the release-history function keeps of what the endpoint runs (`served_content_hash`); with only
a version, the one hash published under it, else the legacy `{prefix}<version>/` layout of older publications.
"""

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from drift_engine.model_output import ModelOutput
from drift_engine.payload_decoding import to_float

# S3 API reference, GetObject: a missing key is 404 NoSuchKey to a reader holding s3:ListBucket (403 without).
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
VERSION_INDEX = "_versions/"
MIN_HASH_PREFIX = 12
# Statuses of a release that served (or serves) traffic, in the order a capture row is attributed to them.
SERVING_ORDER = ("live", "baking", "deploying", "rolled_back", "superseded")


class BaselineNotFound(LookupError):
    """No baseline/metadata exists for a model version."""


class AmbiguousBaseline(ValueError):
    """Several models were published under one version and nothing says which one served."""


@dataclass(frozen=True)
class FeatureSpec:
    """One schema feature with its allowed range (None = unbounded)."""

    name: str
    minimum: float | None
    maximum: float | None


@dataclass(frozen=True)
class Baseline:
    """Training distribution of one model version: features (rows x schema columns) and the model's predictions
    of those rows (baseline_predictions.csv: binary P(positive) and regression the value, one per row; multiclass
    rows x classes probabilities), read as the card's task says (`output`)."""

    model_version: str
    features: tuple[FeatureSpec, ...]
    values: np.ndarray
    prediction_scores: np.ndarray | None
    content_hash: str | None
    uri: str = ""
    output: ModelOutput = field(default_factory=ModelOutput)

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
        raise ValueError(f"baseline has shape {matrix.shape}, expected {width} columns")
    return matrix


def parse_prediction_baseline(text: str, output: ModelOutput) -> np.ndarray:
    """baseline_predictions.csv: one column (binary, regression) -> a vector; one per class (multiclass) -> a
    matrix. A file of another width is an error naming the task, never a silently wrong reference."""
    try:
        matrix = parse_baseline_csv(text, output.prediction_columns)
    except ValueError as error:
        raise ValueError(f"baseline_predictions.csv of a {output.task} model: {error}") from None
    return matrix if output.prediction_columns > 1 else matrix[:, 0]


def _read_text(s3: Any, bucket: str, key: str) -> str | None:
    try:
        return str(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8"))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _NOT_FOUND:
            return None
        raise


def _folders(s3: Any, bucket: str, parent: str, starting: str = "") -> list[str]:
    """Names directly under `parent` that start with `starting` (folders and objects), through every page."""
    names: list[str] = []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=parent + starting, Delimiter="/")
    for page in pages:
        names += [p["Prefix"][len(parent) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
        names += [o["Key"][len(parent) :] for o in page.get("Contents", [])]
    return names


def _is_hash(text: str) -> bool:
    return MIN_HASH_PREFIX <= len(text) <= 64 and all(c in "0123456789abcdef" for c in text)


def resolve_root(s3: Any, bucket: str, prefix: str, model_version: str, content_hash: str | None = None) -> str:
    """The key prefix of the baseline to compare with: the model `content_hash` names (the full sha256, or a
    prefix of it such as the endpoint's 16-character `model-hash` tag), else the one hash published under
    `model_version`, else the legacy version folder. Raises AmbiguousBaseline when that is not one model."""
    if content_hash:
        if not _is_hash(content_hash):
            raise ValueError(f"content hash {content_hash!r} is not a sha256 (or a prefix of one)")
        if len(content_hash) == 64:
            return f"{prefix}{content_hash}/"
        full = [name for name in _folders(s3, bucket, prefix, content_hash) if len(name) == 64]
        if len(full) > 1:
            raise AmbiguousBaseline(f"content hash prefix {content_hash} matches {len(full)} baselines")
        return f"{prefix}{full[0] if full else content_hash}/"
    published = sorted(n for n in _folders(s3, bucket, f"{prefix}{VERSION_INDEX}{model_version}/") if _is_hash(n))
    if len(published) > 1:
        listed = ", ".join(h[:16] for h in published)
        raise AmbiguousBaseline(
            f"model version {model_version} has {len(published)} published baselines ({listed}): only the release "
            "history can tell which one served"
        )
    return f"{prefix}{published[0]}/" if published else f"{prefix}{model_version}/"


def served_content_hash(releases_table: Any, endpoint_name: str, model_version: str) -> str | None:
    """The content hash (release record `model_hash`) of the release of `endpoint_name` with `model_version`
    that served the traffic: the live one, else one baking or deploying, else the latest rolled back or
    superseded. `releases_table` is a boto3 DynamoDB Table of the release history (ml_constructs/
    release_history_table.py: GSI `status-index`, partition `<endpoint>#<status>`, newest change last)."""
    for status in SERVING_ORDER:
        query = {
            "IndexName": "status-index",
            "KeyConditionExpression": "status_key = :k",
            "ExpressionAttributeValues": {":k": f"{endpoint_name}#{status}"},
            "ScanIndexForward": False,
        }
        while True:
            page = releases_table.query(**query)
            for item in page.get("Items", []):
                if item.get("model_version") == model_version and item.get("model_hash"):
                    return str(item["model_hash"])
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return None


_cache: dict[tuple[str, str], Baseline] = {}


def clear_cache() -> None:
    _cache.clear()


def load_baseline(s3: Any, bucket: str, prefix: str, model_version: str, content_hash: str | None = None) -> Baseline:
    """Read metadata.json, baseline.csv and optional baseline_predictions.csv of the model that served
    `model_version` (see `resolve_root`; pass `content_hash` from `served_content_hash` when known).

    Cached per Lambda container by baseline folder: a published baseline is never overwritten. Missing
    baselines are not cached so a baseline uploaded later is picked up by the next run.
    """
    root = resolve_root(s3, bucket, prefix, model_version, content_hash)
    cache_key = (bucket, root)
    if cache_key in _cache:
        return _cache[cache_key]
    metadata_text = _read_text(s3, bucket, root + "metadata.json")
    baseline_text = _read_text(s3, bucket, root + "baseline.csv")
    if metadata_text is None or baseline_text is None:
        raise BaselineNotFound(f"s3://{bucket}/{root}")
    try:
        metadata = json.loads(metadata_text)
    except json.JSONDecodeError as error:
        raise ValueError(f"s3://{bucket}/{root}metadata.json is not JSON: {error.msg}") from error
    if not isinstance(metadata, dict):
        # `null` or `[1]`: this version's baseline_error, never an AttributeError that stops every version's report.
        raise ValueError(f"s3://{bucket}/{root}metadata.json is {type(metadata).__name__}, not an object")
    if content_hash and not str(metadata.get("content_sha256", "")).startswith(content_hash):
        raise ValueError(f"s3://{bucket}/{root}metadata.json describes model {metadata.get('content_sha256')}")
    features = parse_feature_schema(metadata)
    output = ModelOutput.from_metadata(metadata)
    scores_text = _read_text(s3, bucket, root + "baseline_predictions.csv")
    scores = parse_prediction_baseline(scores_text, output) if scores_text else None
    baseline = Baseline(
        model_version=model_version,
        features=features,
        values=parse_baseline_csv(baseline_text, len(features)),
        prediction_scores=scores,
        content_hash=metadata.get("content_sha256"),  # the model build's name for it
        uri=f"s3://{bucket}/{root}",
        output=output,
    )
    _cache[cache_key] = baseline
    return baseline

"""The model card: what a model package says about its model, read by every part of the platform.

A model package is a directory (or an S3 prefix) holding ``model.onnx`` and ``metadata.json``, the model card, plus
``baseline.csv``, ``baseline_predictions.csv`` and ``holdout.csv`` (README "Bring your own model"). The card is the
one source of truth for the model's name, version, task, feature schema, labels or target, acceptance thresholds,
holdout metrics and lineage: the container, the API contract, the model gate, the drift job, resource names, tags
and the image label all read it. This module is standard library only, so the serving image, the scripts and the
CDK app can all import it.

A card without ``task`` is a card of a release older than this field: a binary classifier with labels 0/1.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

CARD_FILE = "metadata.json"
Task = Literal["binary_classification", "multiclass_classification", "regression"]
BINARY: Final = "binary_classification"
MULTICLASS: Final = "multiclass_classification"
REGRESSION: Final = "regression"
TASKS = (BINARY, MULTICLASS, REGRESSION)
SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?")
MODEL_NAME = re.compile(r"[a-z][a-z0-9-]{1,46}[a-z0-9]")

# Holdout metrics per task, and whether higher is better. Per-class recall of a multiclass model is reported as
# `recall.<label name>` besides its worst class, `min_class_recall`.
METRICS: dict[str, dict[str, bool]] = {
    BINARY: {"accuracy": True, "precision": True, "recall": True, "roc_auc": True},
    MULTICLASS: {"accuracy": True, "macro_f1": True, "min_class_recall": True},
    REGRESSION: {"rmse": False, "mae": False, "r2": True},
}
# The ONNX outputs a task's graph must have, in order (the card's onnx.outputs names them).
OUTPUT_ROLES = {BINARY: ("label", "probabilities"), MULTICLASS: ("label", "probabilities"), REGRESSION: ("value",)}

# SageMaker real-time inference takes a request body of at most 6 MB, and answers with a body of at most the same
# ("Body ... Maximum length of 6291456", SageMaker Runtime API reference, InvokeEndpoint,
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html; botocore's
# sagemaker-runtime model gives Body max 6291456 for the request and the response). The batch cap must hold for the
# widest request the contract accepts and for the widest answer the container gives:
# - a request row in its widest form, a named-feature object `{"<name>": <value>, ...}` (wider than the array form
#   `[<value>, ...]` by the names), each value at most VALUE_BYTES wide (the shortest round-trip form of any finite
#   double, e.g. `-2.2250738585072014e-308`, is 24 characters), with json.dumps' default ", " and ": " separators;
# - an answer row with the card's real class names (JSON-escaped) and a model_version of at most VERSION_BYTES.
# A client that pads numbers with digits past round-trip precision or pretty-prints its JSON is outside the bound.
# The container's own cap stays at MAX_BATCH_ROWS.
PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024
VALUE_BYTES = 24
VERSION_BYTES = 64
ENVELOPE_BYTES = 64  # {"instances": []} / {"predictions": []}, with room to spare
MAX_BATCH_ROWS = 10_000

# Class names become CloudWatch dimension values (the container's EMF `PredictedClass`, the drift job's
# PutMetricData `Class`, the dashboards' and alarms' dimensions): "Dimension values must contain only ASCII characters
# and must include at least one non-whitespace character. ASCII control characters are not supported" (CloudWatch API
# reference, Dimension, https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_Dimension.html: 1-1024);
# an alarm's dimension value is "from 1-255 characters in length" (AWS::CloudWatch::Alarm Dimension, CDK
# CfnAlarm.DimensionProperty, https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.aws_cloudwatch.CfnAlarm.DimensionProperty.html),
# the stricter bound, taken here.
LABEL_NAME = re.compile(r"[\x20-\x7e]{1,255}")
# One metric stream per class: the container's PredictedClassShare EMF records stop at MAX_CLASS_SHARES classes
# (model_container/server/metrics.py; the rest would share "(other classes)", which the dashboards cannot tell
# apart) and the drift job publishes ClassRecall per class. A card has at most this many classes.
MAX_CLASSES = 50
# The container's PredictedClassShare streams and the dashboard's graphs of them (model_container/server/metrics.py,
# ml_constructs/endpoint_alarms.py): one stream per class up to MAX_CLASS_SHARES, the rest under OTHER_CLASSES.
MAX_CLASS_SHARES = MAX_CLASSES
OTHER_CLASSES = "(other classes)"


class CardError(ValueError):
    """A model card that is missing, unreadable or inconsistent; the message names the field."""


def request_row_bytes(feature_names: Sequence[str]) -> int:
    """An upper bound on one request row's JSON size in its widest form (object rows), separator included."""
    # '"<name>": <value>, ' per feature, '{' '}' and the ', ' before the next row
    return sum(len(json.dumps(name)) + 2 + VALUE_BYTES + 2 for name in feature_names) + 4


def response_row_bytes(task: str, label_names: Sequence[str] = ()) -> int:
    """An upper bound on one prediction object's JSON size (orjson, compact), separator included."""
    base = len('{"model_version":"",}') + VERSION_BYTES + 1  # the trailing ',' before the next row
    if task == MULTICLASS:
        # "label":<index>,"probabilities":{"<name>":<p>,...}
        label = len('"label":,') + len(str(max(0, len(label_names) - 1)))
        per_class = sum(len(json.dumps(name)) + 1 + VALUE_BYTES + 1 for name in label_names)
        return base + label + len('"probabilities":{},') + per_class
    if task == REGRESSION:
        return base + len('"value":,') + VALUE_BYTES
    return base + len('"label":1,"probability":,') + VALUE_BYTES


def max_batch_rows(feature_names: Sequence[str], task: str = BINARY, label_names: Sequence[str] = ()) -> int:
    """Rows per request that fit the 6 MB body both ways (widest request row, widest answer row), at most
    MAX_BATCH_ROWS. The one implementation of the cap: the card's validate() holds max_batch_rows to it."""
    per_row = max(request_row_bytes(feature_names), response_row_bytes(task, label_names))
    return max(1, min(MAX_BATCH_ROWS, (PAYLOAD_LIMIT_BYTES - ENVELOPE_BYTES) // per_row))


def _need(condition: bool, field: str, problem: str) -> None:
    if not condition:
        raise CardError(f"model card field '{field}': {problem}")


@dataclass(frozen=True)
class ModelCard:
    """A validated model card (metadata.json): accessors for what the platform reads, `raw` for the rest."""

    raw: Mapping[str, Any]

    @classmethod
    def load(cls, path: Path | str) -> ModelCard:
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise CardError(f"{path} is missing: build the model package first (make model)") from None
        except (OSError, ValueError) as error:
            raise CardError(f"{path} is not a readable JSON model card: {error}") from None
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: Any, where: str = "model card") -> ModelCard:
        _need(isinstance(raw, dict), "(root)", f"{where} must be a JSON object")
        card = cls(raw)
        card.validate()
        return card

    # ---- identity ---------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.raw["model_name"])

    @property
    def version(self) -> str:
        return str(self.raw["model_version"])

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def content_sha256(self) -> str:
        return str(self.raw.get("content_sha256", ""))

    @property
    def task(self) -> str:
        return str(self.raw.get("task", BINARY))

    @property
    def description(self) -> str:
        return str(self.raw.get("description") or self.name)

    # ---- inputs -----------------------------------------------------------------------------------------
    @property
    def feature_schema(self) -> dict[str, Any]:
        return dict(self.raw["feature_schema"])

    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.raw["feature_schema"]["features"]]

    @property
    def width(self) -> int:
        return len(self.raw["feature_schema"]["features"])

    @property
    def max_batch_rows(self) -> int:
        return int(self.raw["feature_schema"]["max_batch_rows"])

    # ---- outputs ----------------------------------------------------------------------------------------
    @property
    def is_classifier(self) -> bool:
        return self.task != REGRESSION

    @property
    def label_names(self) -> list[str]:
        """Class names in label order (label i is label_names[i]); empty for regression."""
        labels = self.raw.get("labels") or {}
        return [str(labels[str(i)]) for i in range(len(labels))]

    @property
    def classes(self) -> int:
        return len(self.label_names)

    @property
    def positive_label(self) -> int | None:
        return int(self.raw.get("positive_label", 1)) if self.task == BINARY else None

    @property
    def target(self) -> dict[str, Any]:
        """Regression: {"name", "unit", "description"}; empty otherwise."""
        return dict(self.raw.get("target") or {})

    @property
    def output_names(self) -> list[str]:
        return list(self.raw.get("onnx", {}).get("outputs") or OUTPUT_ROLES[self.task])

    # ---- evaluation -------------------------------------------------------------------------------------
    @property
    def metrics(self) -> dict[str, bool]:
        """The task's metric names and whether higher is better."""
        return METRICS[self.task]

    @property
    def holdout_metrics(self) -> dict[str, Any]:
        return dict(self.raw.get("holdout_metrics") or {})

    @property
    def acceptance(self) -> dict[str, dict[str, float]]:
        """The model gate's thresholds: {metric: {"min": x} | {"max": y}}."""
        return {k: dict(v) for k, v in (self.raw.get("acceptance") or {}).items()}

    def validate(self) -> None:
        raw = self.raw
        for key in ("model_name", "model_version", "feature_schema"):
            _need(key in raw, key, "is required")
        _need(
            isinstance(raw["model_name"], str) and bool(MODEL_NAME.fullmatch(raw["model_name"])),
            "model_name",
            "must be 3-48 characters of a-z, 0-9 and '-', starting with a letter (it names AWS resources)",
        )
        _need(
            isinstance(raw["model_version"], str) and bool(SEMVER.fullmatch(raw["model_version"])),
            "model_version",
            "must be a semantic version MAJOR.MINOR.PATCH, e.g. 1.0.0",
        )
        _need(self.task in TASKS, "task", f"must be one of {', '.join(TASKS)}")
        schema = raw["feature_schema"]
        _need(
            isinstance(schema, dict) and isinstance(schema.get("features"), list) and bool(schema["features"]),
            "feature_schema.features",
            "must be a non-empty list",
        )
        names = []
        for index, feature in enumerate(schema["features"]):
            where = f"feature_schema.features[{index}]"
            _need(isinstance(feature, dict), where, "must be an object")
            _need(
                isinstance(feature.get("name"), str)
                and bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", feature["name"])),
                f"{where}.name",
                "must be an identifier (letters, digits, _; at most 64)",
            )
            for bound in ("minimum", "maximum"):
                value = feature.get(bound)
                _need(
                    isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
                    f"{where}.{bound}",
                    "must be a finite number",
                )
            _need(feature["minimum"] < feature["maximum"], where, "minimum must be below maximum")
            names.append(feature["name"])
        _need(len(set(names)) == len(names), "feature_schema.features", "names must be unique")
        rows = schema.get("max_batch_rows")
        _need(
            isinstance(rows, int) and not isinstance(rows, bool) and rows >= 1,
            "feature_schema.max_batch_rows",
            "must be a positive integer",
        )
        _need(len(raw["model_version"]) <= VERSION_BYTES, "model_version", f"must be at most {VERSION_BYTES} long")
        if self.is_classifier:
            labels: dict[str, Any] = raw.get("labels") or {}
            _need(
                isinstance(labels, dict) and sorted(labels) == sorted(str(i) for i in range(len(labels))),
                "labels",
                "must map every class index 0..k-1 (as a string) to its name",
            )
            expected = "exactly 2" if self.task == BINARY else "at least 3"
            count_ok = len(labels) == 2 if self.task == BINARY else len(labels) >= 3
            _need(count_ok, "labels", f"a {self.task} model has {expected} classes")
            _need(all(isinstance(v, str) and v for v in labels.values()), "labels", "names must be strings")
            for key, value in sorted(labels.items(), key=lambda item: int(item[0])):
                _need(
                    bool(LABEL_NAME.fullmatch(value)) and not value.isspace(),
                    f"labels.{key}",
                    f"{value!r} is not a CloudWatch dimension value: 1-255 printable ASCII characters, not blank",
                )
            _need(
                len(labels) <= MAX_CLASSES,
                "labels",
                f"{len(labels)} classes; at most {MAX_CLASSES} (one CloudWatch metric stream per class)",
            )
            _need(len(set(labels.values())) == len(labels), "labels", "names must be unique")
            if self.task == BINARY and "positive_label" in raw:
                positive = raw["positive_label"]
                _need(
                    isinstance(positive, int) and not isinstance(positive, bool) and positive in (0, 1),
                    "positive_label",
                    f"{positive!r}: must be the class index 0 or 1 (an integer)",
                )
        else:
            _need(
                isinstance(raw.get("target"), dict) and bool(raw["target"].get("name")),
                "target.name",
                "a regression model names its target (and may give its unit)",
            )
        for metric, bound in (raw.get("acceptance") or {}).items():
            where = f"acceptance.{metric}"
            _need(metric in self.metrics, where, f"a {self.task} model's metrics are {', '.join(self.metrics)}")
            _need(
                isinstance(bound, dict) and len(bound) == 1 and set(bound) <= {"min", "max"},
                where,
                'must be {"min": x} or {"max": x}',
            )
            ((side, value),) = bound.items()
            _need(
                isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
                where,
                "the threshold must be a finite number",
            )
            _need(
                (side == "min") == self.metrics[metric],
                where,
                f"{metric} is {'higher' if self.metrics[metric] else 'lower'}-is-better: use "
                f"{'min' if self.metrics[metric] else 'max'}",
            )
        limit = max_batch_rows(names, self.task, self.label_names)
        _need(
            rows <= limit,
            "feature_schema.max_batch_rows",
            f"{rows} is above {limit}: at most {limit} rows of these {len(names)} features fit SageMaker's 6 MB "
            "InvokeEndpoint body both as named-feature objects and in the answer",
        )

    def response_example(self) -> dict[str, Any]:
        """One prediction as the container answers it, for documentation."""
        if self.task == BINARY:
            return {"label": 1, "probability": 0.973214, "model_version": self.version}
        if self.task == MULTICLASS:
            # The last class is the most probable, so `label` is the argmax of `probabilities`, as the model answers.
            rest = round(0.3 / (self.classes - 1), 6)
            last = round(1 - rest * (self.classes - 1), 6)
            probabilities = {name: rest for name in self.label_names[:-1]} | {self.label_names[-1]: last}
            return {"label": self.classes - 1, "probabilities": probabilities, "model_version": self.version}
        return {"value": 151.25, "model_version": self.version}


def card_field_digests(raw: Mapping[str, Any], fields: Sequence[str]) -> dict[str, str]:
    """SHA-256 of each card field's canonical JSON (null when absent): what contract generation records in
    generated-from.json and what synth recomputes to refuse a stale contract (one function for both sides)."""
    return {
        name: hashlib.sha256(json.dumps(raw.get(name), sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        for name in fields
    }

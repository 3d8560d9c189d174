"""Release gate for a model build: the task's holdout metrics against the card's acceptance thresholds, the live
model's metrics and the request contract.

    python -m scripts.model_gate --dist model_container/dist [--tolerance 0.01]
        [--live-metrics FILE | --endpoint E --table T --artifacts-bucket B]
        [--previous-contract DIR] [--contract model_container/contract] [--report reports/model-gate.json]

The model card (dist/metadata.json, model_container/card.py) is the source of truth: its `task` picks the metrics
(model_container/evaluation.py: binary accuracy/precision/recall/roc_auc; multiclass accuracy/macro_f1/
min_class_recall, with recall.<class> reported; regression rmse/mae (lower is better)/r2), its `acceptance`
({metric: {"min"|"max": x}}) holds the thresholds. `--thresholds`/`--thresholds-kv` override them for one run.

The live model is the release table's live release; its baseline is published under baselines/<content_sha256>/
(scripts/publish_baseline.py; older releases under baselines/<model_version>/). The gate scores the live model's
published model.onnx on the candidate's holdout (which holds a retraining run's fresh labels), so both models are
measured on the same rows, and falls back to the live model's recorded holdout_metrics, saying so, when it has no
published model. No table, no bucket or no published baseline (a first run) means no live release yet: the
candidate is judged on its thresholds alone and the report's `live.skipped` says why. A live model of another task
(a card without `task` is binary) is not compared metric by metric: a task change changes every response, so it
needs an API major version bump (api.version), as any breaking contract change does.

Exit codes: 0 passed, 1 a gate failed, 2 usage or unreadable input, 3 AWS error while reading the live model
(access denied, throttled after retries, a corrupt publication), naming what it read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    # Run as a file (python scripts/model_gate.py): the repo root must be importable for model_container, lambda_src.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import onnxruntime as ort
from botocore.exceptions import BotoCoreError, ClientError

from model_container import evaluation
from model_container.card import BINARY, REGRESSION, CardError, ModelCard


class GateInputError(Exception):
    """An input file or argument the gate cannot work with (exit 2)."""


class LiveModelError(Exception):
    """The live model's metrics could not be read from AWS (exit 3)."""


# ---- holdout evaluation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Scorer:
    """What scoring an ONNX graph needs from a card: the task, the class names and the input width."""

    task: str
    label_names: tuple[str, ...]
    width: int

    @classmethod
    def of(cls, card: ModelCard) -> Scorer:
        return cls(card.task, tuple(card.label_names), card.width)

    @classmethod
    def of_raw(cls, metadata: Mapping[str, Any]) -> Scorer:
        """A published card, which may predate card validation: no `task` is binary; no `labels`, no names
        (label_names empty: the candidate's are used)."""
        found = metadata.get("labels")
        labels: dict[str, Any] = found if isinstance(found, dict) else {}
        task = str(metadata.get("task", BINARY))
        names = tuple(str(labels.get(str(i))) for i in range(len(labels))) if task != REGRESSION else ()
        features = (metadata.get("feature_schema") or {}).get("features") or []
        return cls(task, names, len(features))


def read_holdout(dist: Path) -> np.ndarray:
    try:
        return np.loadtxt(dist / "holdout.csv", delimiter=",", ndmin=2, dtype=np.float64)
    except (OSError, ValueError) as error:
        raise GateInputError(f"cannot read {dist}/holdout.csv: {error} (build it first)") from None


def split_holdout(scorer: Scorer, holdout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(truth, features) of holdout rows: a classifier's label (a class index) or a regressor's target first."""
    if holdout.shape[0] == 0 or holdout.shape[1] < 2:
        raise GateInputError("holdout.csv needs rows of a label or target value followed by the features")
    truth, features = holdout[:, 0], holdout[:, 1:]
    if scorer.task == REGRESSION:
        return truth, features
    classes = len(scorer.label_names)
    if not np.all(truth == np.round(truth)) or truth.min() < 0 or truth.max() >= classes:
        raise GateInputError(
            f"holdout.csv's first column must be class indices 0..{classes - 1} (the card's labels), "
            f"found values from {truth.min():g} to {truth.max():g}"
        )
    return truth.astype(np.int64), features


def score_with(scorer: Scorer, onnx_bytes: bytes, holdout: np.ndarray) -> dict[str, float]:
    """The task's metrics of an ONNX model on holdout rows, computed as the build computes the card's
    holdout_metrics (model_container/evaluation.py), so a candidate's recomputed metrics equal its recorded ones.
    Raises GateInputError when the model does not take the holdout's features."""
    truth, features = split_holdout(scorer, holdout)
    width = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"]).get_inputs()[0].shape[1]
    if isinstance(width, int) and features.shape[1] != width:
        raise GateInputError(f"the holdout has {features.shape[1]} features, the model expects {width}")
    predicted = evaluation.predictions(onnx_bytes, features, scorer.task)
    found = evaluation.metrics(scorer.task, truth, predicted, list(scorer.label_names))
    return {name: float(value) for name, value in found.items() if name != "rows"}


def score(card: ModelCard, onnx_bytes: bytes, holdout: np.ndarray) -> dict[str, float]:
    return score_with(Scorer.of(card), onnx_bytes, holdout)


def load_candidate(dist: Path) -> tuple[ModelCard, dict[str, float]]:
    """The candidate's card and its metrics recomputed from dist/model.onnx on dist/holdout.csv."""
    try:
        card = ModelCard.load(dist)
        onnx_bytes = (dist / "model.onnx").read_bytes()
    except (CardError, OSError) as error:
        raise GateInputError(f"cannot read the model package in {dist}: {error} (build it first)") from None
    # The gate must judge the bytes that ship, so a model.onnx that is not the one described is refused.
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    if digest != card.content_sha256:
        raise GateInputError(f"{dist}/model.onnx sha256 {digest} does not match metadata.json content_sha256")
    try:
        return card, score(card, onnx_bytes, read_holdout(dist))
    except GateInputError as error:
        raise GateInputError(f"{dist}: {error}") from None


def evaluate(dist: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """Score dist/model.onnx on dist/holdout.csv; returns (the card as a dict, recomputed metrics)."""
    card, metrics = load_candidate(dist)
    return dict(card.raw), metrics


def direction(higher_is_better: bool) -> str:
    return "higher is better" if higher_is_better else "lower is better"


def worse_than_live(value: float, live: float, higher_is_better: bool, tolerance: float) -> bool:
    """Higher-is-better metrics (accuracy, recall, F1, ROC AUC, R²) are unitless and bounded above by 1, so the
    tolerance is an absolute drop (0.01 = one point). RMSE and MAE are in the target's unit, whose scale is the
    model's (disease progression ~50, house prices ~1e5): an absolute tolerance would mean nothing across models,
    so for them the tolerance is relative to the live value (0.01 = 1% worse)."""
    if higher_is_better:
        return value < live - tolerance
    return value > live * (1 + tolerance)


def check_metrics(
    card: ModelCard,
    metrics: Mapping[str, float],
    thresholds: Mapping[str, Mapping[str, float]],
    live: Mapping[str, Any] | None,
    tolerance: float,
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """(failures, per-metric report) of the candidate's metrics against the thresholds and the live model's."""
    failures, table = [], {}
    for name, higher in card.metrics.items():
        value, bound = metrics[name], dict(thresholds.get(name, {}))
        row: dict[str, Any] = {"value": value, "direction": direction(higher), "threshold": bound or None}
        found = []
        for side, limit in bound.items():
            if (side == "min" and value < limit) or (side == "max" and value > limit):
                word = "under" if side == "min" else "over"
                found.append(f"{name} {value:.6f} is {word} its threshold {limit} (acceptance.{name}.{side})")
        if live and isinstance(live.get(name), int | float):
            row["live"] = float(live[name])
            if worse_than_live(value, row["live"], higher, tolerance):
                allowed = f"{tolerance}" if higher else f"{tolerance:.0%} of it"
                found.append(
                    f"{name} {value:.6f} is worse than the live model's {row['live']:.6f} ({direction(higher)}) "
                    f"by more than the tolerance {allowed}"
                )
        table[name] = {**row, "passed": not found}
        failures += found
    return failures, table


def thresholds_of(card: ModelCard, override: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """The card's acceptance, with --thresholds values (in each metric's direction) over it."""
    unknown = sorted(set(override) - set(card.metrics))
    if unknown:
        raise GateInputError(
            f"thresholds: unknown metric(s) {', '.join(unknown)}; a {card.task} model's metrics: "
            f"{', '.join(card.metrics)}"
        )
    found = card.acceptance
    for name, value in override.items():
        found[name] = {"min" if card.metrics[name] else "max": value}
    return found


# ---- live model -----------------------------------------------------------------------------------
def live_from_file(path: Path) -> dict[str, Any]:
    try:
        metadata = json.loads(path.read_text())
        return {
            "source": str(path),
            "model_version": metadata.get("model_version"),
            "content_sha256": metadata.get("content_sha256"),
            "task": str(metadata.get("task", BINARY)),
            "metrics": metadata["holdout_metrics"],
            "metrics_source": "recorded (--live-metrics)",
        }
    except (OSError, ValueError, KeyError, AttributeError) as error:
        raise GateInputError(f"--live-metrics {path}: not a metadata.json with holdout_metrics ({error})") from None


# What a first run finds: no table (DynamoDB API reference, ResourceNotFoundException: "The operation tried to
# access a nonexistent table or index ... or its status might not be ACTIVE"), no bucket (S3 API reference, Error
# responses: NoSuchBucket) or no object (404 NoSuchKey; S3 answers 403 AccessDenied instead to a reader without
# s3:ListBucket, GetObject API reference, Permissions). Each means "nothing is live yet"; every other error
# (AccessDenied, throttling that outlasted botocore's retries, ...) fails the gate naming what it read.
TABLE_MISSING = {"ResourceNotFoundException"}
OBJECT_MISSING = {"NoSuchKey", "404", "NotFound"}
BUCKET_MISSING = {"NoSuchBucket"}
BASELINES = "baselines/"


class NothingPublished(Exception):
    """The artifacts bucket does not exist (yet)."""


def _error_text(error: ClientError) -> str:
    details = error.response.get("Error", {})
    return f"{details.get('Code')}: {details.get('Message', '')}".rstrip(": ")


class LiveReader:
    """Reads the live release and its published baseline, telling "not there" from "cannot read"."""

    def __init__(self, endpoint: str, table: str, bucket: str) -> None:
        import boto3

        self.endpoint, self.table, self.bucket = endpoint, table, bucket
        self.dynamodb, self.s3 = boto3.resource("dynamodb"), boto3.client("s3")

    def live_release(self) -> tuple[Any | None, str]:
        from lambda_src.releases.release_history.repository import ReleaseRepository, Status

        try:
            releases = ReleaseRepository(self.dynamodb.Table(self.table), self.endpoint).by_status(Status.LIVE)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in TABLE_MISSING:
                return None, f"release table {self.table} does not exist (first run): no live release yet"
            raise LiveModelError(
                f"reading the live release of {self.endpoint} from DynamoDB table {self.table}: {_error_text(error)}"
            ) from None
        except BotoCoreError as error:
            raise LiveModelError(f"reading DynamoDB table {self.table}: {error}") from None
        if not releases:
            return None, f"no live release of {self.endpoint} in {self.table} yet"
        return releases[0], ""

    def get(self, key: str) -> bytes | None:
        """The object's bytes, None when it does not exist; NothingPublished when the bucket does not."""
        try:
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in OBJECT_MISSING:
                return None
            if code in BUCKET_MISSING:
                raise NothingPublished from None
            raise LiveModelError(f"reading s3://{self.bucket}/{key}: {_error_text(error)}") from None
        except BotoCoreError as error:
            raise LiveModelError(f"reading s3://{self.bucket}/{key}: {error}") from None

    def baseline_root(self, release: Any) -> str:
        """The live model's baseline folder: keyed on its content hash (the release's model-hash tag is its first
        16 characters), or the version folder older releases were published under."""
        digest = release.model_hash
        if digest:
            start = f"{BASELINES}{digest}"
            try:
                pages = self.s3.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=start, Delimiter="/"
                )
                folders = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in BUCKET_MISSING:
                    raise NothingPublished from None
                raise LiveModelError(f"listing s3://{self.bucket}/{start}*: {_error_text(error)}") from None
            except BotoCoreError as error:
                raise LiveModelError(f"listing s3://{self.bucket}/{start}*: {error}") from None
            if len(folders) > 1:
                raise LiveModelError(f"s3://{self.bucket}/{start}* matches {len(folders)} baselines: {folders}")
            if folders:
                return str(folders[0])
        return f"{BASELINES}{release.model_version}/"

    def contract(self, root: str) -> Path:
        """The live model's API contract, as publish_baseline.py stored it (absent for older releases)."""
        target = Path(tempfile.mkdtemp(prefix="live-contract-"))
        for name in ("request.schema.json", "openapi.json"):
            body = self.get(f"{root}contract/{name}")
            if body is not None:
                (target / name).write_bytes(body)
        return target


def live_from_aws(
    endpoint: str, table: str, bucket: str, candidate: tuple[Scorer, np.ndarray] | None = None
) -> dict[str, Any]:
    """The live model as the gate compares with it: the release table names the live release, whose published
    baseline (publish_baseline.py) holds its card and its model.onnx. With `candidate` (the candidate's scorer and
    holdout), a live model of the same task and classes is scored on those rows, so both are measured on the same
    data; its recorded holdout_metrics are the fallback when it has no published model. {"skipped": why} when
    nothing is live."""
    reader = LiveReader(endpoint, table, bucket)
    release, reason = reader.live_release()
    if release is None:
        return {"skipped": reason}
    try:
        root = reader.baseline_root(release)
        metadata_body = reader.get(root + "metadata.json")
    except NothingPublished:
        return {"skipped": f"live release {release.release_id}: artifacts bucket {bucket} does not exist yet"}
    described = {"release_id": release.release_id, "model_version": release.model_version}
    source = f"s3://{bucket}/{root}"
    if metadata_body is None:
        return {**described, "skipped": f"live release {release.release_id} has no published baseline at {source}"}
    try:
        metadata = json.loads(metadata_body)
        if not isinstance(metadata, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:
        raise LiveModelError(f"{source}metadata.json is not a model card: {error}") from None
    digest = str(metadata.get("content_sha256") or "")
    if release.model_hash and not digest.startswith(release.model_hash):
        # A version folder of an older publication can hold another model of the same version.
        return {
            **described,
            "skipped": f"live release {release.release_id} (model {release.model_hash}) has no published baseline: "
            f"{source} holds model {digest[:16] or '?'}",
        }
    live = {**described, "source": source, "content_sha256": metadata.get("content_sha256")}
    live["task"] = str(metadata.get("task", BINARY))
    live["recorded_metrics"] = metadata.get("holdout_metrics")
    live |= _live_metrics(reader, root, metadata, candidate)
    live["contract_dir"] = str(reader.contract(root))
    return live


def _not_comparable(live: Scorer, candidate: Scorer) -> str:
    """Why the live model's metrics cannot be set beside the candidate's, or ''."""
    if live.task != candidate.task:
        return f"the live model is {live.task}, the candidate {candidate.task}"
    if live.label_names and live.label_names != candidate.label_names:
        return f"the live model's classes are {list(live.label_names)}, the candidate's {list(candidate.label_names)}"
    return ""


def _live_metrics(
    reader: LiveReader, root: str, metadata: dict[str, Any], candidate: tuple[Scorer, np.ndarray] | None
) -> dict[str, Any]:
    source = f"s3://{reader.bucket}/{root}"
    live_scorer = Scorer.of_raw(metadata)
    if candidate is not None:
        if why := _not_comparable(live_scorer, candidate[0]):
            return {"metrics": None, "metrics_source": f"not compared: {why}"}
        live_scorer = replace(live_scorer, label_names=candidate[0].label_names)
    onnx_bytes = reader.get(root + "model.onnx") if candidate is not None else None
    why_recorded = "no published model.onnx" if candidate is not None else "no holdout given"
    if onnx_bytes is not None and candidate is not None:
        holdout = candidate[1]
        digest = hashlib.sha256(onnx_bytes).hexdigest()
        if digest != metadata.get("content_sha256"):
            raise LiveModelError(f"{source}model.onnx sha256 {digest} does not match its metadata.json")
        try:
            return {
                "metrics": score_with(live_scorer, onnx_bytes, holdout),
                "metrics_source": f"scored on the candidate's holdout ({holdout.shape[0]} rows), as the candidate",
            }
        except GateInputError as error:
            why_recorded = f"the live model cannot score the candidate's holdout: {error}"
        except Exception as error:  # onnxruntime's own exception types; a broken live model must not pass silently
            raise LiveModelError(f"scoring {source}model.onnx: {error}") from None
    if not isinstance(metadata.get("holdout_metrics"), dict):
        raise LiveModelError(f"{source}metadata.json has no holdout_metrics and the live model cannot be scored")
    return {
        "metrics": metadata["holdout_metrics"],
        "metrics_source": f"recorded at the live model's build, on its own holdout ({why_recorded})",
    }


# ---- request contract -----------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise GateInputError(f"cannot read {path}: {error}") from None


def _api_versions(openapi: dict[str, Any]) -> tuple[int, int]:
    """(info.version major, highest /vN/ path version) of an OpenAPI document."""
    major = int(str(openapi.get("info", {}).get("version", "0")).split(".")[0] or 0)
    paths = [
        int(p.split("/")[1][1:])
        for p in openapi.get("paths", {})
        if p.count("/") > 1 and p.split("/")[1][:1] == "v" and p.split("/")[1][1:].isdigit()
    ]
    return major, max(paths, default=0)


# Where the API's major version is set (platform_config/settings.py ApiSettings.version; the contract generator reads
# it, the gateway's path and openapi.json's info.version follow it).
VERSION_SETTING = "api.version in cdk.json (ml-platform.defaults.api.version)"
# JSON Schema bounds, each with the direction that narrows it: a higher lower bound or a lower upper bound.
LOWER_BOUNDS = ("minimum", "minItems", "minLength", "minProperties")
UPPER_BOUNDS = ("maximum", "maxItems", "maxLength", "maxProperties")
NUMERIC_TYPES = {"integer", "number"}


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    return set(kind) if isinstance(kind, list) else {kind} if kind else set()


def _type_narrowed(old: set[str], new: set[str]) -> bool:
    """A value the old type admitted that the new one refuses (an integer is a number; no type admits all)."""
    if not new:
        return False
    if not old:
        return True
    widened = new | ({"integer"} if "number" in new else set())
    return not old <= widened


def request_narrowings(old: Any, new: Any, where: str) -> list[str]:
    """What a request valid under `old` may now be refused for under `new`: a new required field, a removed field
    (closed objects) or a narrowed type, range, size or enum. Added optional fields and widened ranges pass."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new else [f"{where}: schema changed shape"]
    found = []
    if _type_narrowed(_types(old), _types(new)):
        found.append(f"{where}: type narrowed from {sorted(_types(old))} to {sorted(_types(new))}")
    for bound, tighter in [(b, max) for b in LOWER_BOUNDS] + [(b, min) for b in UPPER_BOUNDS]:
        if bound in new and (bound not in old or tighter(old[bound], new[bound]) != old[bound]):
            found.append(f"{where}: {bound} narrowed from {old.get(bound, 'none')} to {new[bound]}")
    if "enum" in new and ("enum" not in old or any(value not in new["enum"] for value in old["enum"])):
        found.append(f"{where}: enum narrowed from {old.get('enum', 'any')} to {new['enum']}")
    for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
        found.append(f"{where}: new required request field {name!r}")
    closed = new.get("additionalProperties") is False
    if closed and old.get("additionalProperties") is not False:
        found.append(f"{where}: no longer accepts additional properties")
    old_properties, new_properties = old.get("properties", {}), new.get("properties", {})
    for name, old_property in old_properties.items():
        if name not in new_properties:
            if closed:
                found.append(f"{where}: request field {name!r} removed or renamed")
            continue
        found += request_narrowings(old_property, new_properties[name], f"{where}.{name}")
    found += _nested_narrowings(old, new, where)
    return found


def _nested_narrowings(old: dict[str, Any], new: dict[str, Any], where: str) -> list[str]:
    found = []
    old_items, new_items = old.get("items"), new.get("items")
    if isinstance(old_items, list) and isinstance(new_items, list):
        for index, (before, after) in enumerate(zip(old_items, new_items, strict=False)):
            found += request_narrowings(before, after, f"{where}[{index}]")
    elif old_items is not None or new_items is not None:
        found += request_narrowings(old_items or {}, new_items or {}, f"{where}[]")
    old_any, new_any = old.get("anyOf", []), new.get("anyOf", [])
    if len(new_any) < len(old_any):
        found.append(f"{where}: {len(old_any) - len(new_any)} of its anyOf forms removed")
    for index, (before, after) in enumerate(zip(old_any, new_any, strict=False)):
        found += request_narrowings(before, after, f"{where}.anyOf[{index}]")
    return found


def response_removals(old: Any, new: Any, where: str) -> list[str]:
    """What a consumer reading a response under `old` may now miss: a removed field, a field no longer required,
    or a changed type. Added response fields pass (consumers ignore what they do not read)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    found = []
    if _types(old) and _types(old) != _types(new):
        found.append(f"{where}: response type changed from {sorted(_types(old))} to {sorted(_types(new))}")
    old_properties, new_properties = old.get("properties", {}), new.get("properties", {})
    for name in old_properties:
        if name not in new_properties:
            found.append(f"{where}: response field {name!r} removed")
        elif name in old.get("required", []) and name not in new.get("required", []):
            found.append(f"{where}: response field {name!r} no longer always present")
        else:
            found += response_removals(old_properties[name], new_properties[name], f"{where}.{name}")
    found += response_removals(old.get("items"), new.get("items"), f"{where}[]")
    return found


def breaking_changes(old_schema: Any, new_schema: Any, old_openapi: Any, new_openapi: Any) -> list[str]:
    """Changes that break an existing consumer: a removed or renamed path or operation, a request the old contract
    accepted that the new one refuses (request.schema.json, which the gateway validates), a response field gone."""
    found = request_narrowings(old_schema, new_schema, "request")
    old_paths, new_paths = old_openapi.get("paths", {}), new_openapi.get("paths", {})
    for path, operations in old_paths.items():
        if path not in new_paths:
            found.append(f"path {path} removed or renamed (now: {', '.join(new_paths) or 'none'})")
            continue
        for method in set(operations) - set(new_paths[path]):
            found.append(f"{method.upper()} {path} removed")
    old_response = old_openapi.get("components", {}).get("schemas", {}).get("PredictResponse")
    new_response = new_openapi.get("components", {}).get("schemas", {}).get("PredictResponse")
    if old_response is not None:
        found += response_removals(old_response, new_response or {}, "response")
    return found


def check_contract(current: Path, previous: Path) -> tuple[dict[str, Any], list[str]]:
    """An unchanged or compatible contract passes; a breaking change needs a bumped API major (api.version)."""
    old_schema = previous / "request.schema.json"
    if not old_schema.is_file():
        return {"checked": False, "reason": f"{old_schema} not found (first release?)"}, []
    new_schema_doc, old_schema_doc = _read_json(current / "request.schema.json"), _read_json(old_schema)
    new_openapi = _read_json(current / "openapi.json")
    old_openapi_path = previous / "openapi.json"
    old_openapi = _read_json(old_openapi_path) if old_openapi_path.is_file() else {}
    if new_schema_doc == old_schema_doc and (not old_openapi or new_openapi == old_openapi):
        return {"checked": True, "request_schema_changed": False}, []
    new_versions, old_versions = _api_versions(new_openapi), _api_versions(old_openapi)
    bumped = new_versions[0] > old_versions[0] or new_versions[1] > old_versions[1]
    # Without the live openapi.json (older releases), a changed request schema is all the gate can compare.
    breaking = (
        breaking_changes(old_schema_doc, new_schema_doc, old_openapi, new_openapi)
        if old_openapi
        else (["request.schema.json changed (the live release published no openapi.json)"]
              if new_schema_doc != old_schema_doc else [])
    )  # fmt: skip
    summary = {
        "checked": True,
        "request_schema_changed": new_schema_doc != old_schema_doc,
        "breaking_changes": breaking,
        "version_bumped": bumped,
        "api_major": {"previous": old_versions[0], "current": new_versions[0]},
        "path_version": {"previous": old_versions[1], "current": new_versions[1]},
    }
    if bumped or not breaking:
        return summary, []
    return summary, [
        f"contract: breaking change without an API major version bump ({'; '.join(breaking)}): the live API is "
        f"version {old_versions[0]}; set {VERSION_SETTING} to {old_versions[0] + 1}, run make contracts and commit "
        "the contract (consumers move to the new /v<major>/predict path)"
    ]


# ---- task ---------------------------------------------------------------------------------------------
# What each task answers per row (the serving contract): a task change removes the fields consumers read.
RESPONSE_FIELDS = {
    "binary_classification": "label, probability",
    "multiclass_classification": "label, probabilities",
    "regression": "value",
}
# Before api.version was a setting every release served API version 1 (/v1/predict), so a live release that
# published no openapi.json is version 1.
UNPUBLISHED_API_MAJOR = 1


def check_task(task: str, live: Mapping[str, Any], current: Path, previous: Path | None) -> tuple[dict, list[str]]:
    """A live model of another task answers other fields: the change needs the API's next major version."""
    live_task = live.get("task")
    if not live_task or live_task == task:
        return {"changed": False, "task": task, "live_task": live_task}, []
    new_versions = _api_versions(_read_json(current / "openapi.json"))
    old_openapi = previous / "openapi.json" if previous else None
    old_versions = (
        _api_versions(_read_json(old_openapi))
        if old_openapi and old_openapi.is_file()
        else (UNPUBLISHED_API_MAJOR, UNPUBLISHED_API_MAJOR)
    )
    bumped = new_versions[0] > old_versions[0] or new_versions[1] > old_versions[1]
    summary = {
        "changed": True,
        "task": task,
        "live_task": live_task,
        "version_bumped": bumped,
        "api_major": {"previous": old_versions[0], "current": new_versions[0]},
    }
    if bumped:
        return summary, []
    return summary, [
        f"task: the live model is {live_task} (answers {RESPONSE_FIELDS.get(str(live_task), '?')}), this model is "
        f"{task} (answers {RESPONSE_FIELDS[task]}): a breaking change of every response without an API major "
        f"version bump: the live API is version {old_versions[0]}; set {VERSION_SETTING} to {old_versions[0] + 1}, "
        "run make contracts and commit the contract (consumers move to the new /v<major>/predict path)"
    ]


# ---- command line ---------------------------------------------------------------------------------
def parse_thresholds(json_text: str | None, kv_text: str | None) -> dict[str, float]:
    try:
        thresholds = {k: float(v) for k, v in json.loads(json_text).items()} if json_text else {}
        for pair in filter(None, (kv_text or "").split(",")):
            name, _, value = pair.partition("=")
            thresholds[name.strip()] = float(value)
    except (ValueError, AttributeError, TypeError) as error:
        raise GateInputError(f"thresholds: {error}") from None
    return thresholds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dist", type=Path, default=Path("model_container/dist"))
    parser.add_argument(
        "--thresholds",
        help="override the card's acceptance for this run, JSON, e.g. '{\"accuracy\": 0.95}' (a metric's bound "
        "in its direction: a minimum, or a maximum for rmse/mae)",
    )
    parser.add_argument("--thresholds-kv", help="the same as accuracy=0.95,rmse=60 (merged over --thresholds)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="allowed regression from the live model: an absolute drop for higher-is-better metrics, a fraction of "
        "the live value for rmse/mae",
    )
    parser.add_argument("--live-metrics", type=Path, help="the live model's metadata.json (instead of AWS)")
    parser.add_argument("--endpoint", help="SageMaker endpoint name (release table partition)")
    parser.add_argument("--table", help="release history table")
    parser.add_argument("--artifacts-bucket", help="bucket holding baselines/<content_sha256>/ (publish_baseline.py)")
    parser.add_argument("--contract", type=Path, default=Path("model_container/contract"))
    parser.add_argument("--previous-contract", type=Path, help="contract/ directory of the live release")
    parser.add_argument("--report", type=Path, help="also write the JSON summary here")
    return parser


def read_live(args: argparse.Namespace, card: ModelCard) -> dict[str, Any]:
    scorer = Scorer.of(card)
    live: dict[str, Any] = {"skipped": "no live model given: comparison skipped"}
    if args.live_metrics:
        live = live_from_file(args.live_metrics)
        why = _not_comparable(Scorer.of_raw(json.loads(args.live_metrics.read_text())), scorer)
        if why:
            live |= {"metrics": None, "metrics_source": f"not compared: {why}"}
    elif args.endpoint or args.table or args.artifacts_bucket:
        if not (args.endpoint and args.table and args.artifacts_bucket):
            raise GateInputError("--endpoint, --table and --artifacts-bucket go together")
        live = live_from_aws(args.endpoint, args.table, args.artifacts_bucket, (scorer, read_holdout(args.dist)))
    if "skipped" in live:
        live["judged_on"] = "thresholds alone: no live model to compare with"
    return live


def no_thresholds(card: ModelCard) -> list[str]:
    example = ", ".join(f'"{name}": {{"{"min" if up else "max"}": ...}}' for name, up in card.metrics.items())
    return [
        f"thresholds: the model card has no acceptance (model card field 'acceptance', e.g. {{{example}}}): "
        "the gate does not release a model without its acceptance criteria"
    ]


def run(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    override = parse_thresholds(args.thresholds, args.thresholds_kv)
    card, metrics = load_candidate(args.dist)
    thresholds = thresholds_of(card, override)
    live = read_live(args, card)
    failures = [] if thresholds else no_thresholds(card)
    metric_failures, table = check_metrics(card, metrics, thresholds, live.get("metrics"), args.tolerance)
    failures += metric_failures
    contract: dict[str, Any] = {"checked": False, "reason": "no --previous-contract given and no live contract"}
    previous = args.previous_contract or (Path(live["contract_dir"]) if live.get("contract_dir") else None)
    task_change, task_failures = check_task(card.task, live, args.contract, previous)
    failures += task_failures
    if previous:
        contract, contract_failures = check_contract(args.contract, previous)
        failures += contract_failures
    summary = {
        "passed": not failures,
        "failures": failures,
        "task": card.task,
        "model": {"name": card.name, "version": card.version, "content_sha256": card.content_sha256},
        "metrics": table,
        "holdout_metrics": metrics,
        "holdout_rows": int(read_holdout(args.dist).shape[0]),
        "thresholds": thresholds,
        "thresholds_source": "--thresholds over the model card's acceptance" if override else "model card acceptance",
        "tolerance": args.tolerance,
        "tolerance_rule": {
            "higher is better": "candidate >= live - tolerance",
            "lower is better": "candidate <= live * (1 + tolerance)",
        },
        "live": live,
        "task_change": task_change,
        "contract": contract,
        # Set by the pipeline: a retraining run started by drift carries its reason.
        "trigger": {
            "retraining": os.environ.get("RETRAINING") == "true",
            "reason": os.environ.get("RETRAINING_REASON", "source change"),
        },
    }
    return (1 if failures else 0), summary


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code, summary = run(args)
    except GateInputError as error:
        print(f"model_gate: {error}", file=sys.stderr)
        return 2
    except LiveModelError as error:
        print(f"model_gate: {error}", file=sys.stderr)
        return 3
    text = json.dumps(summary, indent=2, sort_keys=True)
    print(text)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n")
    for failure in summary["failures"]:
        print(f"model_gate: FAILED {failure}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())

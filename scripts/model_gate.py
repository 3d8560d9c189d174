"""Release gate for a model build: holdout metrics, the live model's metrics and the request contract.

    python -m scripts.model_gate --dist model_container/dist --thresholds '{"accuracy": 0.93, "roc_auc": 0.97}' \
        [--tolerance 0.01] [--live-metrics FILE | --endpoint E --table T --artifacts-bucket B] \
        [--previous-contract DIR] [--contract model_container/contract] [--report reports/model-gate.json]

The live model is the release table's live release; its baseline is published under baselines/<content_sha256>/
(scripts/publish_baseline.py; older releases under baselines/<model_version>/). The gate scores the live model's
published model.onnx on the candidate's holdout (which holds a retraining run's fresh labels), so both models are
measured on the same rows, and falls back to the live model's recorded holdout_metrics, saying so, when it has no
published model. No table, no bucket or no published baseline (a first run) means no live release yet: the
candidate is judged on its thresholds alone and the report's `live.skipped` says why.

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
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from botocore.exceptions import BotoCoreError, ClientError

METRICS = ("accuracy", "precision", "recall", "roc_auc")


class GateInputError(Exception):
    """An input file or argument the gate cannot work with (exit 2)."""


class LiveModelError(Exception):
    """The live model's metrics could not be read from AWS (exit 3)."""


# ---- holdout evaluation ---------------------------------------------------------------------------
def read_holdout(dist: Path) -> np.ndarray:
    try:
        return np.loadtxt(dist / "holdout.csv", delimiter=",", ndmin=2, dtype=np.float64)
    except (OSError, ValueError) as error:
        raise GateInputError(f"cannot read {dist}/holdout.csv: {error} (build it first)") from None


def score(onnx_bytes: bytes, holdout: np.ndarray) -> dict[str, float]:
    """Metrics of an ONNX model on holdout rows (label first), computed as the build computes holdout_metrics
    (model_container/build_model.py), so a candidate's recomputed metrics equal its recorded ones. Raises
    GateInputError when the model does not take the holdout's features."""
    from model_container.build_model import holdout_metrics

    labels, features = holdout[:, 0].astype(np.int64), holdout[:, 1:].astype(np.float32)
    width = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"]).get_inputs()[0].shape[1]
    if isinstance(width, int) and features.shape[1] != width:
        raise GateInputError(f"the holdout has {features.shape[1]} features, the model expects {width}")
    metrics = holdout_metrics(onnx_bytes, features, labels)
    return {name: float(metrics[name]) for name in METRICS}


def evaluate(dist: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """Score dist/model.onnx on dist/holdout.csv; returns (metadata, recomputed metrics)."""
    try:
        metadata = json.loads((dist / "metadata.json").read_text())
        onnx_bytes = (dist / "model.onnx").read_bytes()
    except (OSError, ValueError) as error:
        raise GateInputError(f"cannot read the model build in {dist}: {error} (build it first)") from None
    # The gate must judge the bytes that ship, so a model.onnx that is not the one described is refused.
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    if digest != metadata.get("content_sha256"):
        raise GateInputError(f"{dist}/model.onnx sha256 {digest} does not match metadata.json content_sha256")
    try:
        return metadata, score(onnx_bytes, read_holdout(dist))
    except GateInputError as error:
        raise GateInputError(f"{dist}: {error}") from None


def check_metrics(
    metrics: dict[str, float], thresholds: dict[str, float], live: dict[str, float] | None, tolerance: float
) -> list[str]:
    failures = [
        f"{name} {metrics[name]:.6f} is under its threshold {minimum}"
        for name, minimum in thresholds.items()
        if metrics[name] < minimum
    ]
    for name in METRICS:
        if live and name in live and metrics[name] < float(live[name]) - tolerance:
            failures.append(
                f"{name} {metrics[name]:.6f} is worse than the live model's {float(live[name]):.6f} "
                f"by more than the tolerance {tolerance}"
            )
    return failures


# ---- live model -----------------------------------------------------------------------------------
def live_from_file(path: Path) -> dict[str, Any]:
    try:
        metadata = json.loads(path.read_text())
        return {
            "source": str(path),
            "model_version": metadata.get("model_version"),
            "content_sha256": metadata.get("content_sha256"),
            "metrics": metadata["holdout_metrics"],
            "metrics_source": "recorded (--live-metrics)",
        }
    except (OSError, ValueError, KeyError) as error:
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


def live_from_aws(endpoint: str, table: str, bucket: str, holdout: np.ndarray | None = None) -> dict[str, Any]:
    """The live model as the gate compares with it: the release table names the live release, whose published
    baseline (publish_baseline.py) holds its build metadata and its model.onnx. With `holdout`, the live model is
    scored on those rows (the candidate's holdout), so both are measured on the same data; its recorded
    holdout_metrics are the fallback when it has no published model. {"skipped": why} when nothing is live."""
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
    except ValueError as error:
        raise LiveModelError(f"{source}metadata.json is not JSON: {error}") from None
    digest = str(metadata.get("content_sha256") or "")
    if release.model_hash and not digest.startswith(release.model_hash):
        # A version folder of an older publication can hold another model of the same version.
        return {
            **described,
            "skipped": f"live release {release.release_id} (model {release.model_hash}) has no published baseline: "
            f"{source} holds model {digest[:16] or '?'}",
        }
    live = {**described, "source": source, "content_sha256": metadata.get("content_sha256")}
    live["recorded_metrics"] = metadata.get("holdout_metrics")
    live |= _live_metrics(reader, root, metadata, holdout)
    live["contract_dir"] = str(reader.contract(root))
    return live


def _live_metrics(
    reader: LiveReader, root: str, metadata: dict[str, Any], holdout: np.ndarray | None
) -> dict[str, Any]:
    source = f"s3://{reader.bucket}/{root}"
    onnx_bytes = reader.get(root + "model.onnx") if holdout is not None else None
    why_recorded = "no published model.onnx" if holdout is not None else "no holdout given"
    if onnx_bytes is not None and holdout is not None:
        digest = hashlib.sha256(onnx_bytes).hexdigest()
        if digest != metadata.get("content_sha256"):
            raise LiveModelError(f"{source}model.onnx sha256 {digest} does not match its metadata.json")
        try:
            return {
                "metrics": score(onnx_bytes, holdout),
                "metrics_source": f"scored on the candidate's holdout ({holdout.shape[0]} rows), as the candidate",
            }
        except GateInputError as error:
            why_recorded = f"the live model cannot score the candidate's holdout: {error}"
        except Exception as error:  # onnxruntime's own exception types; a broken live model must not pass silently
            raise LiveModelError(f"scoring {source}model.onnx: {error}") from None
    if "holdout_metrics" not in metadata:
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


# ---- command line ---------------------------------------------------------------------------------
def parse_thresholds(json_text: str | None, kv_text: str | None) -> dict[str, float]:
    try:
        thresholds = {k: float(v) for k, v in json.loads(json_text).items()} if json_text else {}
        for pair in filter(None, (kv_text or "").split(",")):
            name, _, value = pair.partition("=")
            thresholds[name.strip()] = float(value)
    except (ValueError, AttributeError) as error:
        raise GateInputError(f"thresholds: {error}") from None
    unknown = sorted(set(thresholds) - set(METRICS))
    if unknown:
        raise GateInputError(f"thresholds: unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
    return thresholds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dist", type=Path, default=Path("model_container/dist"))
    parser.add_argument("--thresholds", help='JSON, e.g. \'{"accuracy": 0.93, "roc_auc": 0.97}\'')
    parser.add_argument("--thresholds-kv", help="the same as accuracy=0.93,roc_auc=0.97 (merged over --thresholds)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="allowed drop below the live model's metric")
    parser.add_argument("--live-metrics", type=Path, help="the live model's metadata.json (instead of AWS)")
    parser.add_argument("--endpoint", help="SageMaker endpoint name (release table partition)")
    parser.add_argument("--table", help="release history table")
    parser.add_argument("--artifacts-bucket", help="bucket holding baselines/<content_sha256>/ (publish_baseline.py)")
    parser.add_argument("--contract", type=Path, default=Path("model_container/contract"))
    parser.add_argument("--previous-contract", type=Path, help="contract/ directory of the live release")
    parser.add_argument("--report", type=Path, help="also write the JSON summary here")
    return parser


def run(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    thresholds = parse_thresholds(args.thresholds, args.thresholds_kv)
    metadata, metrics = evaluate(args.dist)
    live: dict[str, Any] = {"skipped": "no live model given: comparison skipped"}
    if args.live_metrics:
        live = live_from_file(args.live_metrics)
    elif args.endpoint or args.table or args.artifacts_bucket:
        if not (args.endpoint and args.table and args.artifacts_bucket):
            raise GateInputError("--endpoint, --table and --artifacts-bucket go together")
        live = live_from_aws(args.endpoint, args.table, args.artifacts_bucket, read_holdout(args.dist))
    if "skipped" in live:
        live["judged_on"] = "thresholds alone: no live model to compare with"
    failures = check_metrics(metrics, thresholds, live.get("metrics"), args.tolerance)
    contract: dict[str, Any] = {"checked": False, "reason": "no --previous-contract given and no live contract"}
    previous = args.previous_contract or (Path(live["contract_dir"]) if live.get("contract_dir") else None)
    if previous:
        contract, contract_failures = check_contract(args.contract, previous)
        failures += contract_failures
    summary = {
        "passed": not failures,
        "failures": failures,
        "model": {"version": metadata.get("model_version"), "content_sha256": metadata.get("content_sha256")},
        "holdout_metrics": metrics,
        "thresholds": thresholds,
        "tolerance": args.tolerance,
        "live": live,
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
    # Run as a file (python scripts/model_gate.py): the repo root must be importable for lambda_src.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())

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


def check_contract(current: Path, previous: Path) -> tuple[dict[str, Any], list[str]]:
    """An unchanged request schema passes; a changed one needs a bumped API major or /vN/ path."""
    old_schema = previous / "request.schema.json"
    if not old_schema.is_file():
        return {"checked": False, "reason": f"{old_schema} not found (first release?)"}, []
    if _read_json(current / "request.schema.json") == _read_json(old_schema):
        return {"checked": True, "request_schema_changed": False}, []
    new_versions = _api_versions(_read_json(current / "openapi.json"))
    old_openapi = previous / "openapi.json"
    old_versions = _api_versions(_read_json(old_openapi)) if old_openapi.is_file() else (0, 0)
    bumped = new_versions[0] > old_versions[0] or new_versions[1] > old_versions[1]
    summary = {
        "checked": True,
        "request_schema_changed": True,
        "version_bumped": bumped,
        "api_major": {"previous": old_versions[0], "current": new_versions[0]},
        "path_version": {"previous": old_versions[1], "current": new_versions[1]},
    }
    if bumped:
        return summary, []
    return summary, [
        "contract: request.schema.json changed but neither openapi.json info.version major "
        f"({old_versions[0]}) nor the /v{old_versions[1]}/ path version was bumped"
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

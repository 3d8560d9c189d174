"""Release gate for a model build: holdout metrics, the live model's metrics and the request contract.

    python -m scripts.model_gate --dist model_container/dist --thresholds '{"accuracy": 0.93, "roc_auc": 0.97}' \
        [--tolerance 0.01] [--live-metrics FILE | --endpoint E --table T --artifacts-bucket B] \
        [--previous-contract DIR] [--contract model_container/contract] [--report reports/model-gate.json]

Exit codes: 0 passed, 1 a gate failed, 2 usage or unreadable input, 3 AWS error while reading the live model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

METRICS = ("accuracy", "precision", "recall", "roc_auc")


class GateInputError(Exception):
    """An input file or argument the gate cannot work with (exit 2)."""


class LiveModelError(Exception):
    """The live model's metrics could not be read from AWS (exit 3)."""


# ---- holdout evaluation ---------------------------------------------------------------------------
def evaluate(dist: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """Score dist/model.onnx on dist/holdout.csv; returns (metadata, recomputed metrics)."""
    try:
        metadata = json.loads((dist / "metadata.json").read_text())
        onnx_bytes = (dist / "model.onnx").read_bytes()
        holdout = np.loadtxt(dist / "holdout.csv", delimiter=",", ndmin=2, dtype=np.float64)
    except (OSError, ValueError) as error:
        raise GateInputError(f"cannot read the model build in {dist}: {error} (build it first)") from None
    # The gate must judge the bytes that ship, so a model.onnx that is not the one described is refused.
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    if digest != metadata.get("content_sha256"):
        raise GateInputError(f"{dist}/model.onnx sha256 {digest} does not match metadata.json content_sha256")
    labels, features = holdout[:, 0].astype(np.int64), holdout[:, 1:].astype(np.float32)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    width = session.get_inputs()[0].shape[1]
    if isinstance(width, int) and features.shape[1] != width:
        raise GateInputError(f"holdout.csv has {features.shape[1]} features, the model expects {width}")
    outputs = dict(
        zip(
            [o.name for o in session.get_outputs()],
            session.run(None, {session.get_inputs()[0].name: features}),
            strict=True,
        )
    )
    predicted, positive = outputs["label"], outputs["probabilities"][:, 1].astype(np.float64)
    metrics = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(labels, positive)),
    }
    return metadata, {name: round(value, 6) for name, value in metrics.items()}


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
        }
    except (OSError, ValueError, KeyError) as error:
        raise GateInputError(f"--live-metrics {path}: not a metadata.json with holdout_metrics ({error})") from None


def live_from_aws(endpoint: str, table: str, bucket: str) -> dict[str, Any] | None:
    """The live release's metrics: the release table names its model version, whose build metadata
    (holdout_metrics) publish_baseline.py put at s3://bucket/baselines/<version>/metadata.json.
    The release record itself stores no metrics. None when no release is live."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from lambda_src.releases.release_history.repository import ReleaseRepository, Status

    try:
        repository = ReleaseRepository(boto3.resource("dynamodb").Table(table), endpoint)
        releases = repository.by_status(Status.LIVE)
        if not releases:
            return None
        release = releases[0]
        key = f"baselines/{release.model_version}/metadata.json"
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        metadata = json.loads(body)
    except (ClientError, BotoCoreError) as error:
        raise LiveModelError(f"reading the live model of {endpoint} ({table}, s3://{bucket}): {error}") from None
    except ValueError as error:
        raise LiveModelError(f"s3://{bucket}/{key} is not JSON: {error}") from None
    if "holdout_metrics" not in metadata:
        raise LiveModelError(f"s3://{bucket}/{key} has no holdout_metrics")
    contract_dir = _download_contract(bucket, f"baselines/{release.model_version}/contract/")
    return {
        "contract_dir": str(contract_dir),
        "source": f"s3://{bucket}/{key}",
        "release_id": release.release_id,
        "model_version": release.model_version,
        "content_sha256": metadata.get("content_sha256"),
        "metrics": metadata["holdout_metrics"],
    }


def _download_contract(bucket: str, prefix: str) -> Path:
    """The live model's API contract, as publish_baseline.py stored it (absent for older releases)."""
    import tempfile

    import boto3
    from botocore.exceptions import ClientError

    target = Path(tempfile.mkdtemp(prefix="live-contract-"))
    for name in ("request.schema.json", "openapi.json"):
        try:
            boto3.client("s3").download_file(bucket, prefix + name, str(target / name))
        except ClientError as error:
            if error.response["Error"]["Code"] not in ("404", "NoSuchKey"):
                raise
    return target


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
    parser.add_argument("--artifacts-bucket", help="bucket holding baselines/<model_version>/metadata.json")
    parser.add_argument("--contract", type=Path, default=Path("model_container/contract"))
    parser.add_argument("--previous-contract", type=Path, help="contract/ directory of the live release")
    parser.add_argument("--report", type=Path, help="also write the JSON summary here")
    return parser


def run(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    thresholds = parse_thresholds(args.thresholds, args.thresholds_kv)
    metadata, metrics = evaluate(args.dist)
    live: dict[str, Any] | None = None
    if args.live_metrics:
        live = live_from_file(args.live_metrics)
    elif args.endpoint or args.table or args.artifacts_bucket:
        if not (args.endpoint and args.table and args.artifacts_bucket):
            raise GateInputError("--endpoint, --table and --artifacts-bucket go together")
        live = live_from_aws(args.endpoint, args.table, args.artifacts_bucket)
    failures = check_metrics(metrics, thresholds, live["metrics"] if live else None, args.tolerance)
    contract: dict[str, Any] = {"checked": False, "reason": "no --previous-contract given and no live contract"}
    previous = args.previous_contract or (Path(live["contract_dir"]) if live and live.get("contract_dir") else None)
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
        "live": live
        or {
            "skipped": "no live release: comparison with the live model skipped"
            if args.endpoint
            else "no live model given: comparison skipped"
        },
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

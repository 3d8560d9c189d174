"""Pre-built model packages: `model.source = {"package": DIR | "s3://bucket/prefix/"}` (README "Bring your own
model"), checked and installed where `make model` leaves a build (model_container/dist).

A package holds ``model.onnx``, ``metadata.json`` (the complete model card), ``baseline.csv`` (training features)
and ``holdout.csv`` (label or target first), all CSVs header-less; ``baseline_predictions.csv`` is computed from the
model when absent. The card is read from beside the model, never from a local build. Checks, each naming the file
and field: the card is valid (model_container/card.py), its content_sha256 is model.onnx's, the graph takes one
float input of the card's width and has the task's outputs, the CSVs have the card's columns, holdout labels are
the card's classes, recorded holdout metrics are what the graph scores on holdout.csv (missing ones are filled in).

    python -m model_container.package check DIR    # exit 0, or 2 naming what is wrong; writes nothing
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from model_container import build_model, evaluation
from model_container.card import CARD_FILE, REGRESSION, CardError, ModelCard

REQUIRED = ("model.onnx", CARD_FILE, "baseline.csv", "holdout.csv")
OPTIONAL = ("baseline_predictions.csv",)
# Recorded metrics may come from another tool's rounding; beyond this they describe another model or holdout.
METRIC_TOLERANCE = 1e-3
BuildInputError = build_model.BuildInputError


def _local_reader(directory: Path) -> Callable[[str], bytes | None]:
    if not directory.is_dir():
        raise BuildInputError(f"model.source.package {directory}: not a directory")

    def read(name: str) -> bytes | None:
        path = directory / name
        return path.read_bytes() if path.is_file() else None

    return read


# What a reader of an S3 package needs (ml_constructs/pipeline_steps.py package_read grants it to the pipeline's Synth
# role): s3:GetObject on the prefix's objects; s3:ListBucket on the bucket for the prefix, because "If you don't have
# the s3:ListBucket permission, Amazon S3 returns an HTTP status code 403 Access Denied error" for an absent object
# (Amazon S3 API Reference, GetObject, Permissions, https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html),
# and an optional file may be absent; and for a bucket encrypted with a customer managed KMS key, kms:Decrypt on that
# key ("you need the permission to decrypt the AWS KMS key",
# https://repost.aws/knowledge-center/decrypt-kms-encrypted-objects-s3), which the key's policy must allow.
S3_READ_NEEDS = (
    "the reader needs s3:GetObject on the prefix's objects, s3:ListBucket on the bucket for the prefix (without it "
    "S3 answers 403 for an absent file) and, for an SSE-KMS bucket, kms:Decrypt on its key (key policy)"
)


def _s3_reader(uri: str, s3: Any = None) -> Callable[[str], bytes | None]:
    """Files under the prefix, read with the default credentials (the pipeline's Synth role may read it)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise BuildInputError(f"model.source.package {uri!r}: not an s3://bucket/prefix/ URI")
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    client = s3 or boto3.client("s3")

    def listed(key: str) -> bool:
        """Whether `key` exists, by listing it (s3:ListBucket for the prefix), when GetObject answered 403."""
        try:
            found = client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents") or []
        except (ClientError, BotoCoreError):
            return True  # cannot tell: report the GetObject refusal
        return any(item.get("Key") == key for item in found)

    def read(name: str) -> bytes | None:
        key = prefix + name
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404") or (code in ("AccessDenied", "403") and not listed(key)):
                return None
            raise BuildInputError(f"s3://{bucket}/{key}: cannot read ({S3_READ_NEEDS}): {error}") from None
        except BotoCoreError as error:
            raise BuildInputError(f"s3://{bucket}/{key}: cannot read: {error}") from None

    return read


def fetch(location: str, s3: Any = None) -> dict[str, bytes]:
    """The package's files by name; BuildInputError naming the first required one missing."""
    read = _s3_reader(location, s3) if location.startswith("s3://") else _local_reader(Path(location))
    where = location if location.startswith("s3://") else str(Path(location))
    files: dict[str, bytes] = {}
    for name in (*REQUIRED, *OPTIONAL):
        content = read(name)
        if content is None and name in REQUIRED:
            raise BuildInputError(
                f"model.source.package {where}: {name} is missing (a package needs {', '.join(REQUIRED)})"
            )
        if content is not None:
            files[name] = content
    return files


def _matrix(content: bytes, name: str, columns: int) -> np.ndarray:
    try:
        rows = np.loadtxt(io.BytesIO(content), delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as error:
        raise BuildInputError(f"{name}: not header-less numeric CSV ({error})") from None
    if rows.shape[0] == 0 or rows.shape[1] != columns:
        raise BuildInputError(f"{name}: {rows.shape[1] if rows.size else 0} columns per row, the card needs {columns}")
    if not np.isfinite(rows).all():
        raise BuildInputError(
            f"{name}: row {int(np.argwhere(~np.isfinite(rows))[0][0]) + 1} has a value that is not finite"
        )
    return rows


def _card(files: Mapping[str, bytes]) -> ModelCard:
    try:
        raw = json.loads(files[CARD_FILE])
    except ValueError as error:
        raise BuildInputError(f"{CARD_FILE}: not JSON ({error})") from None
    try:
        card = ModelCard.from_dict(raw, CARD_FILE)
    except CardError as error:
        raise BuildInputError(f"{CARD_FILE}: {error}") from None
    if "task" not in raw:
        raise BuildInputError(f"{CARD_FILE}: model card field 'task' is required in a package (one of the three tasks)")
    digest = hashlib.sha256(files["model.onnx"]).hexdigest()
    if card.content_sha256 != digest:
        raise BuildInputError(
            f"{CARD_FILE}: model card field 'content_sha256' is {card.content_sha256!r}, "
            f"model.onnx's sha256 is {digest}"
        )
    # The batch cap (feature_schema.max_batch_rows) is held to the 6 MB body by ModelCard.validate() above.
    return card


def _holdout(card: ModelCard, rows: np.ndarray) -> np.ndarray:
    truth = rows[:, 0]
    if not card.is_classifier:
        return truth
    if not np.array_equal(truth, np.round(truth)) or truth.min() < 0 or truth.max() >= card.classes:
        raise BuildInputError(
            f"holdout.csv: the first column must be class indexes 0..{card.classes - 1} (card labels)"
        )
    return truth.astype(np.int64)


def _metrics(card: ModelCard, measured: Mapping[str, Any]) -> dict[str, Any]:
    recorded = card.holdout_metrics
    for metric, value in recorded.items():
        if metric in measured and metric != "rows" and abs(float(value) - float(measured[metric])) > METRIC_TOLERANCE:
            raise BuildInputError(
                f"{CARD_FILE}: model card field 'holdout_metrics.{metric}' is {value}, model.onnx scores "
                f"{measured[metric]} on holdout.csv"
            )
    if "rows" in recorded and int(recorded["rows"]) != measured["rows"]:
        raise BuildInputError(
            f"{CARD_FILE}: model card field 'holdout_metrics.rows' is {recorded['rows']}, holdout.csv has "
            f"{measured['rows']} rows"
        )
    return {**measured, **recorded}


def checked(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """The package's files as installed (the card completed, baseline predictions computed when absent)."""
    card = _card(files)
    onnx_bytes = files["model.onnx"]
    block = build_model.check_onnx(onnx_bytes, card.task, card.width)
    declared = card.raw.get("onnx", {}).get("input")
    if declared and declared != block["input"]:
        raise BuildInputError(
            f"{CARD_FILE}: model card field 'onnx.input' is {declared!r}, model.onnx's is {block['input']!r}"
        )
    named = card.raw.get("onnx", {}).get("outputs")
    if named and list(named) != block["outputs"]:
        raise BuildInputError(
            f"{CARD_FILE}: model card field 'onnx.outputs' is {named}, model.onnx has {block['outputs']}"
        )
    baseline = _matrix(files["baseline.csv"], "baseline.csv", card.width)
    holdout = _matrix(files["holdout.csv"], "holdout.csv", card.width + 1)
    truth = _holdout(card, holdout)
    measured = build_model.holdout_metrics(onnx_bytes, holdout[:, 1:], truth, card.task, card.label_names)
    scores = evaluation.baseline_scores(onnx_bytes, baseline, card.task)
    if "baseline_predictions.csv" in files:
        given = _matrix(files["baseline_predictions.csv"], "baseline_predictions.csv", scores.shape[1])
        if given.shape[0] != baseline.shape[0]:
            raise BuildInputError(
                f"baseline_predictions.csv: {given.shape[0]} rows, baseline.csv has {baseline.shape[0]}"
            )
    raw = {
        **card.raw,
        "onnx": {**block, **card.raw.get("onnx", {})},
        "holdout_metrics": _metrics(card, measured),
        "training_rows": card.raw.get("training_rows", len(baseline)),
        **{k: v for k, v in build_model.file_descriptions(card.task).items() if k not in card.raw},
    }
    holdout_bytes = build_model.holdout_csv(truth, holdout[:, 1:], card.task != REGRESSION)
    installed = build_model.package_files(onnx_bytes, raw, baseline, holdout_bytes, scores)
    if "baseline_predictions.csv" in files:  # the package's own scores stay as given
        installed["baseline_predictions.csv"] = files["baseline_predictions.csv"]
    return installed


def install(
    location: str, out: Path, contract_dir: Path | None = build_model.CONTRACT_DIR, s3: Any = None
) -> dict[str, Any]:
    """Fetch, check and write a pre-built package into `out` (and its feature contract); returns the card."""
    installed = checked(fetch(location, s3))
    build_model.write_files(out, installed)
    card: dict[str, Any] = json.loads(installed[CARD_FILE])
    if contract_dir is not None:
        build_model.write_contract(contract_dir, card["feature_schema"])
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a model package (README 'Bring your own model').")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="check a package directory or s3:// prefix; writes nothing").add_argument(
        "location"
    )
    args = parser.parse_args(argv)
    try:
        card = json.loads(checked(fetch(args.location))[CARD_FILE])
    except BuildInputError as error:
        print(f"package: {error}", file=sys.stderr)
        return build_model.EXIT_UNUSABLE
    print(
        json.dumps(
            {"location": args.location, "model_name": card["model_name"], "model_version": card["model_version"]}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train the breast-cancer classifier and package it for SageMaker.

Run as ``python -m model_container.build_model --out model_container/dist``. Writes, into ``--out``:
``model.onnx``, ``model.tar.gz`` (model.onnx + metadata.json at the archive root), ``metadata.json``,
``baseline.csv`` (training features, header-less) and ``holdout.csv`` (label first, header-less),
and refreshes the committed feature contract ``model_container/contract/feature_schema.json``.
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
import io
import json
import math
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import orjson
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from model_container.contract import load_feature_schema
from model_container.dataset import snapshot as snapshots
from model_container.dataset.sources import FeatureContract, base_part, bundled_dataset

MODEL_NAME = "breast-cancer-classifier"
MODEL_VERSION = "1.0.0"
SEED = 20261125
HOLDOUT_FRACTION = 0.2
HYPERPARAMETERS: dict[str, Any] = {"C": 1.0, "max_iter": 1000}
EXIT_UNUSABLE, EXIT_UNCHANGED = 2, 5
# The accepted range of each feature is the training min/max widened by this fraction of the
# training span on each side: unusual but plausible patients pass, while unit mistakes and
# swapped columns (values far outside anything seen in training) are rejected.
RANGE_MARGIN = 0.5
# Upper bound on rows per request; 6 MB of JSON holds roughly this many 30-feature rows.
MAX_BATCH_ROWS = 10_000
ONNX_OPSET = 17
CONTRACT_DIR = Path(__file__).parent / "contract"
LABEL_NAMES = {"0": "benign", "1": "malignant"}
JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE


class BuildInputError(Exception):
    """A snapshot, parent or argument the build cannot use (exit 2)."""


class DatasetUnchanged(Exception):
    """The snapshot is the parent's dataset with the parent's parameters: retraining would rebuild it (exit 5)."""

    def __init__(self, parent_version: str) -> None:
        super().__init__(f"dataset unchanged since {parent_version}: the retrained model would be identical")
        self.parent_version = parent_version


def _round_outward(value: float, quantum: float, up: bool) -> float:
    steps = math.ceil(value / quantum) if up else math.floor(value / quantum)
    digits = max(0, -math.floor(math.log10(quantum)))
    return round(steps * quantum, digits)


def feature_schema(names: list[str], x_train: np.ndarray) -> dict[str, Any]:
    features = []
    for name, column in zip(names, x_train.T, strict=True):
        low, high = float(column.min()), float(column.max())
        span = high - low
        quantum = 10.0 ** (math.floor(math.log10(span)) - 3)
        minimum = low - RANGE_MARGIN * span
        if low >= 0:  # all of these measurements are physically non-negative
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
        "description": "Input features of the breast-cancer classifier, in model input order.",
        "range_rule": f"training min/max widened by {RANGE_MARGIN} x training span per side, "
        "floored at 0 for non-negative features, rounded outward",
        "max_batch_rows": MAX_BATCH_ROWS,
        "features": features,
    }


def classifier(seed: int) -> Pipeline:
    model = LogisticRegression(**HYPERPARAMETERS, random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("classify", model)])


def train(seed: int) -> tuple[Pipeline, list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The default build: the bundled dataset, a stratified holdout."""
    names, x, y = bundled_dataset()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=HOLDOUT_FRACTION, stratify=y, random_state=seed)
    pipeline = classifier(seed).fit(x_train, y_train)
    return pipeline, names, x_train, x_test, y_train, y_test


def _split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """train_test_split of one source, stratified whenever each side can hold every class."""
    if len(y) < 2:  # too few to split: a lone fresh label is worth more as evidence than as training
        return x[:0], x, y[:0], y
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


def split_snapshot(snapshot: snapshots.Snapshot, fraction: float, seed: int) -> SplitSnapshot:
    """Each source holds out `fraction` of its own rows, so the holdout always has fresh labels when the snapshot
    has any. A snapshot of the bundled rows alone splits exactly as the default build does."""
    parts = {source: _split(*snapshot.part(source), fraction, seed) for source in snapshots.SOURCES}
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


def parameters(seed: int, holdout_fraction: float) -> dict[str, Any]:
    return {"seed": seed, "holdout_fraction": holdout_fraction, "hyperparameters": dict(HYPERPARAMETERS)}


def bundled_snapshot_sha256(contract: FeatureContract) -> str:
    """The content hash a snapshot of the bundled dataset alone has: the dataset of every build without one."""
    return snapshots.assemble(contract.names, [base_part(None, contract)], snapshots.Checks()).content_sha256


def parent_dataset(parent: dict[str, Any], contract: FeatureContract) -> tuple[str, dict[str, Any]]:
    """(dataset content hash, parameters) the parent was trained with. A parent without lineage is a default
    build: the bundled dataset, the default holdout and this code's hyperparameters."""
    lineage = parent.get("lineage")
    if lineage is None:
        return bundled_snapshot_sha256(contract), parameters(int(parent.get("seed", SEED)), HOLDOUT_FRACTION)
    try:
        return str(lineage["dataset"]["content_sha256"]), dict(lineage["parameters"])
    except (KeyError, TypeError):
        raise BuildInputError("the parent's lineage has no dataset.content_sha256 or parameters") from None


def check_changed(
    parent: dict[str, Any], snapshot_sha256: str, params: dict[str, Any], contract: FeatureContract
) -> None:
    """Raise DatasetUnchanged when the retrained model would be the parent again (same data, same parameters)."""
    parent_sha256, parent_params = parent_dataset(parent, contract)
    if parent_sha256 == snapshot_sha256 and parent_params == params:
        raise DatasetUnchanged(str(parent.get("model_version")))


def to_onnx(pipeline: Pipeline, n_features: int) -> bytes:
    model = convert_sklearn(
        pipeline,
        name=MODEL_NAME,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
        target_opset=ONNX_OPSET,
    )
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def onnx_predict(onnx_bytes: bytes, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(label = 1)) from the exported ONNX graph, not the sklearn object: what ships."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {"input": features.astype(np.float32)})
    return labels, probabilities[:, 1].astype(np.float64)


def holdout_metrics(onnx_bytes: bytes, x_test: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    labels, positive = onnx_predict(onnx_bytes, x_test)
    return {
        "accuracy": round(float(accuracy_score(y_test, labels)), 6),
        "precision": round(float(precision_score(y_test, labels)), 6),
        "recall": round(float(recall_score(y_test, labels)), 6),
        "roc_auc": round(float(roc_auc_score(y_test, positive)), 6),
        "rows": len(y_test),
    }


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


def load_snapshot(path: Path, contract: FeatureContract) -> snapshots.Snapshot:
    try:
        snapshot = snapshots.load(path)
    except snapshots.SnapshotError as error:
        raise BuildInputError(str(error)) from None
    if snapshot.feature_names != contract.names:
        raise BuildInputError(f"{path}: the snapshot's columns are not the feature contract's (rebuild the snapshot)")
    return snapshot


def lineage(
    snapshot: snapshots.Snapshot, split: SplitSnapshot, commit: str, params: dict[str, Any], parent: str | None
) -> dict[str, Any]:
    """What the model came from: code, data (by content hash), parameters, parent version, holdout make-up."""
    manifest = snapshot.manifest
    return {
        "code_commit": commit,
        "dataset": {
            "uri": manifest.get("snapshot_uri"),
            "content_sha256": snapshot.content_sha256,
            "rows": int(snapshot.labels.size),
            "label_distribution": snapshots.label_distribution(snapshot.labels),
            "sources": [
                {key: source[key] for key in ("source", "rows", "uri", "capture_uri", "labels_uri") if key in source}
                for source in manifest.get("sources", [])
            ],
        },
        "parameters": params,
        "parent_version": parent,
        "holdout": {"rows": int(split.y_test.size), "by_source": split.holdout_by_source},
    }


def build(
    out: Path,
    seed: int = SEED,
    version: str | None = None,
    commit: str | None = None,
    contract_dir: Path = CONTRACT_DIR,
    *,
    dataset: Path | None = None,
    parent: dict[str, Any] | None = None,
    holdout_fraction: float = HOLDOUT_FRACTION,
    rebuild_of: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train, export and package the model; return the metadata written.

    Without `dataset`, the default build (bundled data, version MODEL_VERSION). With it, a retraining build:
    raises DatasetUnchanged (writing nothing) when the snapshot is the `parent`'s data and parameters.
    `rebuild_of` (the live model's metadata; exclusive with `parent`): a push build on the live model's data
    (`dataset`, its snapshot, or none when the live model is a default build); its version is `rebuild_version`."""
    commit = commit or git_commit()
    if rebuild_of is not None and (parent is not None or version is not None):
        raise BuildInputError("a rebuild of the live model takes neither --parent nor --version")
    if dataset is None:
        if parent is not None or holdout_fraction != HOLDOUT_FRACTION:
            raise BuildInputError("--parent and --holdout-fraction need --dataset (a retraining build)")
        pipeline, names, x_train, x_test, y_train, y_test = train(seed)
        schema, extra = feature_schema(names, x_train), {}
    else:
        try:
            schema = load_feature_schema(contract_dir / "feature_schema.json")
        except (OSError, ValueError) as error:
            raise BuildInputError(f"cannot read the feature contract in {contract_dir}: {error}") from None
        contract = FeatureContract.from_schema(schema)
        snapshot = load_snapshot(dataset, contract)
        params = parameters(seed, holdout_fraction)
        if parent is not None:
            check_changed(parent, snapshot.content_sha256, params, contract)
            version = version or next_minor(str(parent.get("model_version")))
        split = split_snapshot(snapshot, holdout_fraction, seed)
        x_train, x_test, y_train, y_test = split.x_train, split.x_test, split.y_train, split.y_test
        pipeline, names = classifier(seed).fit(x_train, y_train), list(contract.names)
        parent_version = None if parent is None else str(parent.get("model_version"))
        extra = {"lineage": lineage(snapshot, split, commit, params, parent_version)}
    onnx_bytes = to_onnx(pipeline, len(names))
    if rebuild_of is not None:
        version, identical = rebuild_version(rebuild_of, hashlib.sha256(onnx_bytes).hexdigest())
        if "lineage" in extra:  # the same model keeps its own parent; another one descends from the live model
            live_lineage = rebuild_of.get("lineage") or {}
            parent = live_lineage.get("parent_version") if identical else rebuild_of.get("model_version")
            extra["lineage"]["parent_version"] = parent
            extra["lineage"]["rebuild_of"] = {"version": rebuild_of.get("model_version"), "identical": identical}
    metadata = {
        "model_name": MODEL_NAME,
        "model_version": version or MODEL_VERSION,
        "content_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "training_commit": commit,
        "seed": seed,
        "algorithm": "StandardScaler + LogisticRegression (scikit-learn), exported with skl2onnx",
        "onnx": {"file": "model.onnx", "input": "input", "outputs": ["label", "probabilities"], "opset": ONNX_OPSET},
        "labels": LABEL_NAMES,
        "positive_label": 1,
        "holdout_metrics": holdout_metrics(onnx_bytes, x_test, y_test),
        "training_rows": len(y_train),
        "baseline_csv": {"header": False, "columns": "features in feature_schema order"},
        "holdout_csv": {"header": False, "columns": "label, then features in feature_schema order"},
        "baseline_predictions_csv": {"header": False, "columns": "P(label = 1) of each baseline.csv row"},
        "feature_schema": schema,
        **extra,
    }
    metadata_bytes = orjson.dumps(metadata, option=JSON_OPTIONS)
    out.mkdir(parents=True, exist_ok=True)
    contract_dir.mkdir(parents=True, exist_ok=True)
    outputs = {
        out / "model.onnx": onnx_bytes,
        out / "metadata.json": metadata_bytes,
        out / "model.tar.gz": deterministic_tar_gz({"model.onnx": onnx_bytes, "metadata.json": metadata_bytes}),
        out / "baseline.csv": csv_bytes(x_train),
        # The drift job's reference for prediction drift, scored the way the server scores (6 decimals).
        out / "baseline_predictions.csv": b"".join(b"%.6f\n" % p for p in onnx_predict(onnx_bytes, x_train)[1]),
        out / "holdout.csv": b"".join(
            b"%d,%s" % (label, line)
            for label, line in zip(y_test, csv_bytes(x_test).splitlines(keepends=True), strict=True)
        ),
    }
    if dataset is None:  # a retraining build keeps the contract it read
        outputs[contract_dir / "feature_schema.json"] = orjson.dumps(schema, option=JSON_OPTIONS)
    for path, content in outputs.items():
        path.write_bytes(content)
    return metadata


SAGEMAKER_ROOT = Path("/opt/ml")
CHECKPOINT_DONE = "build-complete"


def sagemaker_train(root: Path = SAGEMAKER_ROOT) -> int:
    """The build as a SageMaker training job runs it: `docker run IMAGE train` ("How Amazon SageMaker AI Runs Your
    Training Image"). Channels are directories under input/data/ (`training`: the snapshot; `parent`: the live
    model's metadata.json, optional); hyperparameters are strings in input/config/hyperparameters.json (seed,
    holdout_fraction, commit, version). The build goes to model/, which SageMaker packs as the job's
    ModelArtifacts, and a failure's reason to output/failure, which DescribeTrainingJob returns as FailureReason
    ("How Amazon SageMaker AI Processes Training Output"). It is built in checkpoints/ first, which SageMaker
    syncs with CheckpointConfig.S3Uri and restores when a spot job restarts ("Checkpoints in Amazon SageMaker
    AI"): a restarted job finds the finished build there and copies it instead of training again."""
    config = root / "input" / "config" / "hyperparameters.json"
    parent_file = root / "input" / "data" / "parent" / "metadata.json"
    checkpoint = root / "checkpoints" / "build"
    try:
        hyperparameters = json.loads(config.read_text()) if config.is_file() else {}
        if not (checkpoint / CHECKPOINT_DONE).is_file():
            shutil.rmtree(checkpoint, ignore_errors=True)  # an interrupted build is started again
            build(
                checkpoint,
                int(hyperparameters.get("seed", SEED)),
                hyperparameters.get("version"),
                hyperparameters.get("commit", "unknown"),
                dataset=root / "input" / "data" / "training",
                parent=json.loads(parent_file.read_text()) if parent_file.is_file() else None,
                holdout_fraction=float(hyperparameters.get("holdout_fraction", HOLDOUT_FRACTION)),
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
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--version", default=None, help=f"default {MODEL_VERSION}, or the --parent's next minor")
    parser.add_argument("--commit", default=None, help="training commit; default: git rev-parse HEAD")
    parser.add_argument("--contract-dir", type=Path, default=CONTRACT_DIR)
    parser.add_argument("--dataset", type=Path, help="snapshot directory (python -m model_container.dataset build)")
    parser.add_argument("--parent", type=Path, help="the live model's metadata.json: this is a retraining build")
    parser.add_argument("--holdout-fraction", type=float, default=HOLDOUT_FRACTION, help="of each source's rows")
    parser.add_argument(
        "--rebuild-of", type=Path, help="the live model's metadata.json: a push build on its data (scripts/retrain.py)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["train"]:  # SageMaker's training container command
        return sagemaker_train()
    args = build_parser().parse_args(arguments)
    try:
        parent = read_parent(args.parent) if args.parent else None
        live = read_parent(args.rebuild_of) if args.rebuild_of else None
        metadata = build(
            args.out,
            args.seed,
            args.version,
            args.commit,
            args.contract_dir,
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
        "model_version": metadata["model_version"],
        "content_sha256": metadata["content_sha256"],
        "holdout_metrics": metadata["holdout_metrics"],
    }
    if "lineage" in metadata:
        lineage = metadata["lineage"]
        summary |= {"dataset_sha256": lineage["dataset"]["content_sha256"], "parent_version": lineage["parent_version"]}
    print(orjson.dumps(summary).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

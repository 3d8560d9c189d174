"""A retraining run's model build, run by the pipeline's Synth step before `make synth` when RETRAINING=true.

    python -m scripts.retrain run --endpoint E --table T --artifacts-bucket PROD_ARTIFACTS \
        --upload s3://PIPELINE_ARTIFACTS/datasets/ --kms-key-id KEY [--dataset-uri s3://bucket/datasets/v3/] \
        [--capture-uri s3://CAPTURE/capture/E/primary/ --labels-uri s3://CAPTURE/GROUND_TRUTH/] \
        [--days 30 --min-rows 500 --min-class-fraction 0.2] [--work build --dist model_container/dist]
        [--runner sagemaker (--training-stack PROD_INFERENCE_STACK | -- <scripts.training_job arguments>)]
    python -m scripts.retrain lineage --endpoint E --table T --artifacts-bucket PROD_ARTIFACTS \
        [--commit SHA] [--work build --dist model_container/dist]
    (run and lineage: [--region PIPELINE_REGION] [--environment-profile PROFILE --environment-region PROD_REGION])
    python -m scripts.retrain verify [--work build --dist model_container/dist]

`run`: (1) `model_container.dataset parent` writes the live production model's metadata.json (build/parent.json),
(2) `model_container.dataset build` assembles, checks and uploads the training snapshot (build/snapshot),
(3) `model_container.build_model --dataset build/snapshot --parent build/parent.json` trains the parent's next
minor version into --dist and records it in build/retrained.json. `verify` (after `make synth`) fails unless
--dist still holds that version: a default build would otherwise ship the bundled 1.0.0 model again.

`lineage`: a push-started run's build (RETRAINING=false), on the live model's data rather than the bundled
dataset, which would ship an older model than the live one. The live release (release history -> its metadata.json
under baselines/, as `run` reads it) names its dataset in `lineage.dataset` (the snapshot `run` kept under the
pipeline's artifacts bucket, datasets/<sha256>/): it is fetched, checked against that hash and trained with the
live model's seed and holdout; a live model without lineage is a default build (the bundled dataset). Versions:
the same ONNX graph keeps the live version (a code-only change that leaves the model alone), another graph is the
live version's next patch (1.1.0 -> 1.1.1); only new data makes a minor version (`run`). With no live release
(a first run) it is the default build, 1.0.0. Records the build in build/retrained.json for `verify`.

Accounts: production may be another account and region than the pipeline. Its reads (the release table, the
live metadata under baselines/, --dataset-uri, the capture and labels, under its data key) and, with --runner
sagemaker, the training job (which runs in production) go through --environment-profile in --environment-region
(the profile ml_constructs/step_access.py writes, assuming production's step role); the pipeline's own artifacts
bucket (the --upload, and the lineage snapshot read back from it) keeps the step's default credentials in
--region. Without the two flags every call uses the default credentials in --region.

Runner: with --runner sagemaker the build of `run` is a SageMaker training job in production (scripts/
training_job.py), with the runner's arguments after `--` or, with --training-stack, from the SSM parameter
that stack's TrainingJobArguments output names (both read through the profile). A stack without them yet - it
does not exist, has no runner, or this step may not read it yet (a first run, or the first after switching
training.runner to sagemaker: the StepAccess and production stages that add them run after Synth) - trains in
the build and says so. Any other failure (the stack read, CreateTrainingJob, a job Failed or Stopped) fails the
run: --dist and build/retrained.json stay as they were, so nothing of it is packaged or registered.

Exit codes: 0 built, 2 unusable input, 3 AWS error, 4 snapshot refused, 5 dataset unchanged since the live
version ("nothing to release": the run must stop before anything deploys), 6 verify found another model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from model_container import build_model
from model_container.dataset import cli as dataset
from model_container.dataset import snapshot as snapshots
from model_container.dataset.sources import split_s3_uri

EXIT_REFUSED, EXIT_UNCHANGED, EXIT_REPLACED = dataset.EXIT_REFUSED, build_model.EXIT_UNCHANGED, 6
RETRAINED = "retrained.json"


def _fail(message: str, code: int) -> int:
    print(f"retrain: {message}", file=sys.stderr)
    return code


def _parent(args: argparse.Namespace, work: Path) -> Path | None:
    """build/parent.json, or None when production has no live release (the build is then a first version)."""
    out = work / "parent.json"
    out.unlink(missing_ok=True)  # a previous run's parent is not this run's live model
    argv = ["parent", "--endpoint", args.endpoint, "--table", args.table, "--artifacts-bucket", args.artifacts_bucket]
    code = dataset.main([*argv, "--out", str(out), *_aws(args)])
    if code != 0:
        raise _Stop(_fail(f"reading the live model of {args.endpoint} failed (exit {code})", code))
    return out if out.is_file() else None


def _snapshot_argv(args: argparse.Namespace, out: Path) -> list[str]:
    argv = ["build", "--out", str(out), "--min-rows", str(args.min_rows)]
    argv += ["--min-class-fraction", str(args.min_class_fraction), "--days", str(args.days), *_aws(args)]
    for flag, value in (
        ("--dataset-uri", args.dataset_uri),
        ("--capture-uri", args.capture_uri),
        ("--labels-uri", args.labels_uri),
        ("--until", args.until),
        ("--upload", args.upload),
        ("--kms-key-id", args.kms_key_id),
    ):
        if value:
            argv += [flag, value]
    return argv


def _aws(args: argparse.Namespace) -> list[str]:
    """The region and production's profile, for model_container.dataset and scripts/training_job.py."""
    argv = ["--region", args.region] if args.region else []
    argv += ["--environment-profile", args.environment_profile] if args.environment_profile else []
    argv += ["--environment-region", args.environment_region] if args.environment_region else []
    return argv


class _Stop(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def run(args: argparse.Namespace) -> int:
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    (work / RETRAINED).unlink(missing_ok=True)  # only this run's finished build may be verified
    try:
        parent = _parent(args, work)
    except _Stop as stop:
        return stop.code
    snapshot = work / "snapshot"
    code = dataset.main(_snapshot_argv(args, snapshot))
    if code == EXIT_REFUSED:
        return _fail("the training snapshot was refused (above): nothing to release", code)
    if code != 0:
        return _fail(f"the training snapshot could not be built (exit {code})", code)
    argv = ["--dataset", str(snapshot), "--out", str(args.dist), "--holdout-fraction", str(args.holdout_fraction)]
    argv += ["--parent", str(parent)] if parent else []
    argv += ["--commit", args.commit] if args.commit else []
    argv += ["--contract-dir", str(args.contract_dir)] if args.contract_dir else []
    code = _train(args, argv)
    if code == EXIT_UNCHANGED:
        version = json.loads(parent.read_text()).get("model_version") if parent else "?"
        return _fail(f"dataset unchanged since {version}: nothing to release", code)
    if code != 0:
        return _fail(f"the model build failed (exit {code})", code)
    metadata = _record(work, args.dist)
    retrained = {key: metadata.get(key) for key in ("model_version", "content_sha256")}
    print(json.dumps({"retrained": retrained, "parent": metadata.get("lineage", {}).get("parent_version")}))
    return 0


def _record(work: Path, dist: Path) -> dict[str, Any]:
    """build/retrained.json: what `verify` expects --dist to hold after `make synth`."""
    metadata = _metadata(dist)
    retrained = {key: metadata.get(key) for key in ("model_version", "content_sha256")}
    (work / RETRAINED).write_text(json.dumps(retrained, sort_keys=True) + "\n")
    return metadata


def fetch_snapshot(s3: Any, dataset: dict[str, Any], out: Path) -> None:
    """The live model's training snapshot, from the URI its lineage records, checked against its content hash."""
    uri, expected = dataset.get("uri"), dataset.get("content_sha256")
    if not uri or not str(uri).startswith("s3://"):
        raise snapshots.SnapshotError(f"the live model's lineage keeps no snapshot URI (dataset.uri {uri!r})")
    bucket, prefix = split_s3_uri(str(uri).rstrip("/") + "/")
    out.mkdir(parents=True, exist_ok=True)
    for name in (snapshots.SNAPSHOT_FILE, snapshots.MANIFEST_FILE):
        (out / name).write_bytes(s3.get_object(Bucket=bucket, Key=prefix + name)["Body"].read())
    found = snapshots.load(out).content_sha256  # also checks the file against its manifest
    if found != expected:
        raise snapshots.SnapshotError(f"{uri} holds the snapshot {found}, not the live model's {expected}")


def _lineage_argv(args: argparse.Namespace, live_file: Path | None, work: Path) -> tuple[list[str], str]:
    """build_model's arguments for a push build, and what it trains on."""
    argv = ["--out", str(args.dist)]
    argv += ["--commit", args.commit] if args.commit else []
    argv += ["--contract-dir", str(args.contract_dir)] if args.contract_dir else []
    source = build_model.check_source(build_model.configured_source())
    if "package" in source:  # a pre-built package is not trained: the push build installs it as it is
        return argv, f"the pre-built package {source['package']} as is (a package is not rebuilt)"
    if live_file is None:
        return argv, f"the model source's data: no live release of {args.endpoint}"
    live = json.loads(live_file.read_text())
    argv += ["--rebuild-of", str(live_file)]
    recorded = live.get("lineage")
    if not recorded or recorded.get("kind") == "source":  # a default build is live: its data is the source's
        seed = ((recorded or {}).get("parameters") or {}).get("seed", live.get("seed"))
        argv += ["--seed", str(seed)] if seed is not None else []
        return argv, f"the model source's data of the live {live.get('model_version')} (a default build)"
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        # The live metadata came from production's baselines/ (through the profile); the snapshot it names is the
        # one `run` uploaded (--upload, lineage.dataset.uri = the manifest's snapshot_uri): the pipeline's own
        # artifacts bucket, datasets/<sha256>/, read with the step's default credentials.
        pipeline, _ = dataset.sessions(args.region, args.environment_profile, args.environment_region)
        fetch_snapshot(pipeline.client("s3"), recorded.get("dataset") or {}, work / "snapshot")
    except (ClientError, BotoCoreError) as error:
        raise _Stop(_fail(f"reading the live model's snapshot failed: {error}", 3)) from None
    except snapshots.SnapshotError as error:
        raise _Stop(_fail(f"the live model's snapshot is unusable: {error}", 2)) from None
    params = recorded.get("parameters") or {}
    argv += ["--dataset", str(work / "snapshot")]
    argv += ["--seed", str(params["seed"])] if "seed" in params else []
    argv += ["--holdout-fraction", str(params["holdout_fraction"])] if "holdout_fraction" in params else []
    return argv, f"the live {live.get('model_version')}'s snapshot {recorded['dataset'].get('uri')}"


def lineage(args: argparse.Namespace) -> int:
    """A push build on the live model's lineage (see the module docstring)."""
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    (work / RETRAINED).unlink(missing_ok=True)
    try:
        live_file = _parent(args, work)
        argv, trained_on = _lineage_argv(args, live_file, work)
    except _Stop as stop:
        return stop.code
    except build_model.BuildInputError as error:  # cdk.json's model.source
        return _fail(str(error), 2)
    except (OSError, ValueError) as error:
        return _fail(f"the live model's metadata is unusable: {error}", 2)
    code = build_model.main(argv)
    if code != 0:
        return _fail(f"the model build failed (exit {code})", code)
    metadata = _record(work, args.dist)
    recorded = metadata.get("lineage") or {}
    print(
        json.dumps(
            {
                "built": {key: metadata.get(key) for key in ("model_version", "content_sha256")},
                "trained_on": trained_on,
                "rebuild_of": recorded.get("rebuild_of"),
            }
        )
    )
    return 0


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    """The build in this process (training.runner: build) or as a SageMaker training job (sagemaker): the same
    arguments, plus the runner's (TrainingRunner.job_arguments: after `--`, or from --training-stack's output) for
    scripts/training_job.py."""
    if args.runner == "build":
        return build_model.main(argv)
    from scripts import training_job

    runner = args.training_job_args
    if not runner:
        try:
            runner = _stack_job_arguments(args)
        except training_job.StackNotReady as not_ready:
            print(f"retrain: no SageMaker training runner in production yet ({not_ready}): training in the build")
            return build_model.main(argv)
        except _Stop as stop:
            return stop.code
    # The job runs in production's account (ml_constructs/training_runner.py): it goes through the profile.
    return training_job.main([*argv, *_aws(args), *runner])


def _stack_job_arguments(args: argparse.Namespace) -> list[str]:
    """The runner's arguments from production's inference stack, through production's profile."""
    from botocore.exceptions import BotoCoreError, ClientError

    from scripts import training_job

    try:
        _, environment = dataset.sessions(args.region, args.environment_profile, args.environment_region)
        return training_job.stack_job_arguments(
            environment.client("cloudformation"), environment.client("ssm"), args.training_stack
        )
    except (ClientError, BotoCoreError) as error:
        raise _Stop(_fail(f"reading {args.training_stack}'s training runner failed: {error}", 3)) from None
    except (ValueError, KeyError) as error:
        raise _Stop(_fail(f"{args.training_stack}'s training runner output is unusable: {error}", 2)) from None


def _metadata(dist: Path) -> dict[str, Any]:
    metadata: dict[str, Any] = json.loads((dist / "metadata.json").read_text())
    return metadata


def verify(args: argparse.Namespace) -> int:
    """`make synth` rebuilds the model when it thinks it stale: the retrained build must be what it packaged."""
    try:
        expected = json.loads((args.work / RETRAINED).read_text())
        found = {key: _metadata(args.dist).get(key) for key in expected}
    except (OSError, ValueError) as error:
        return _fail(f"no retrained build to verify ({error}): `retrain run` did not finish", EXIT_REPLACED)
    if found != expected:
        return _fail(f"{args.dist} holds {found}, not the retrained {expected}: refusing to release it", EXIT_REPLACED)
    print(json.dumps({"verified": expected}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.retrain", description="A retraining run's model build")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser, lineage_parser = commands.add_parser("run"), commands.add_parser("lineage")
    for command in run_parser, lineage_parser, commands.add_parser("verify"):
        command.add_argument("--work", type=Path, default=Path("build"), help="parent.json, snapshot/, retrained.json")
        command.add_argument("--dist", type=Path, default=Path("model_container/dist"))
    for command in run_parser, lineage_parser:
        command.add_argument("--endpoint", required=True, help="production's endpoint (its live release)")
        command.add_argument("--table", required=True, help="production's release history table")
        command.add_argument("--artifacts-bucket", required=True, help="production's artifacts bucket (baselines/)")
        command.add_argument("--commit", help="training commit (default: git rev-parse HEAD)")
        command.add_argument("--contract-dir", type=Path, help="feature contract (default: the committed one)")
        command.add_argument("--region", help="the pipeline's region (its artifacts bucket)")
        command.add_argument("--environment-profile", help="AWS profile for production (default: the step's own)")
        command.add_argument("--environment-region", help="production's region (default: --region)")
    run_parser.add_argument("--dataset-uri", help="pipeline.training.dataset_uri; default the bundled dataset")
    run_parser.add_argument("--capture-uri", help="production's data capture of the endpoint's variant")
    run_parser.add_argument("--labels-uri", help="s3://CAPTURE/<monitoring.ground_truth_prefix>")
    run_parser.add_argument("--until", help="end of the capture window; default now")
    run_parser.add_argument("--days", type=int, default=30, help="pipeline.training.capture_days")
    run_parser.add_argument("--min-rows", type=int, default=500, help="pipeline.training.min_rows")
    run_parser.add_argument("--min-class-fraction", type=float, default=0.2, help="training.min_class_fraction")
    run_parser.add_argument("--holdout-fraction", type=float, default=build_model.HOLDOUT_FRACTION)
    run_parser.add_argument(
        "--runner",
        choices=["build", "sagemaker"],
        default="build",
        help="training.runner; sagemaker takes "
        "scripts/training_job.py's arguments after `--` (ml_constructs/training_runner.py job_arguments)",
    )
    run_parser.add_argument(
        "--training-stack",
        help="sagemaker: production's inference stack, whose TrainingJobArguments output names "
        "the SSM parameter of the runner's arguments (instead of `--`); without it yet the run trains in the build",
    )
    run_parser.add_argument("--upload", help="s3://PIPELINE_ARTIFACTS/datasets/: where the snapshot is kept")
    run_parser.add_argument("--kms-key-id", help="the upload's SSE-KMS key")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    split = arguments.index("--") if "--" in arguments else len(arguments)
    args = build_parser().parse_args(arguments[:split])
    args.training_job_args = arguments[split + 1 :]
    if args.command == "run" and args.runner == "sagemaker" and not (args.training_job_args or args.training_stack):
        return _fail("--runner sagemaker needs --training-stack or scripts/training_job.py's arguments after `--`", 2)
    if args.command == "verify":
        return verify(args)
    if args.command == "lineage":
        return lineage(args)
    if bool(args.capture_uri) != bool(args.labels_uri):
        return _fail("--capture-uri and --labels-uri go together", 2)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

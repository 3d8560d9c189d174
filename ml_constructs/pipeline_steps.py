"""CDK Pipelines pieces the library lacks: the configured source, approvals that notify a topic, a Lambda invoke,
and the model registry steps (register, answer, approve, check).

Registering and checking a package run as production's step role (ml_constructs/step_access.py), in the
registry's account. Answering and approving also read the pipeline (CodePipeline has no resource policies): they
run in the pipeline account, and reach the registry through the group's resource policy (SageMaker Developer Guide,
Model Registry cross-account: "Set up discoverability" and "Register a Model Version from a Different Account")."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jsii
from aws_cdk import IAnyProducer, IResolveContext, Lazy, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codecommit as codecommit
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from ml_constructs.step_access import EnvironmentAccess, StepRoles, environment_step
from platform_config.settings import EnvironmentSettings, PipelineSource

# The build synth packages, kept in its output: the model gate, the drift baseline and the Model Monitor baseline
# judge and publish that build, not one rebuilt from the bundled data (a retraining or lineage build differs).
PACKAGED_MODEL = "cdk.out/model-dist"
KEEP_PACKAGED_MODEL = f"rm -rf {PACKAGED_MODEL} && cp -r model_container/dist {PACKAGED_MODEL}"
# `make model` then finds the copy newer than its sources and the venv, and rebuilds nothing.
USE_PACKAGED_MODEL = [
    "make .venv/.deps-stamp",
    f"mkdir -p model_container/dist && cp {PACKAGED_MODEL}/* model_container/dist/",
    "make model",
]


def model_package_uri(environment: EnvironmentSettings) -> str | None:
    """The configured pre-built model package (directory or s3:// URI), None for a training entry point."""
    source = getattr(environment.model, "source", None)
    return getattr(source, "package", None)


def model_data_uri(environment: EnvironmentSettings) -> str | None:
    """The configured training data when it is an S3 CSV (`model.source.data: s3://bucket/key.csv`), else None."""
    source = getattr(environment.model, "source", None)
    data = getattr(source, "data", None)
    return data if isinstance(data, str) and data.startswith("s3://") else None


def _bucket_and_key(uri: str, field: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"{field}: {uri!r} is not an s3:// URI")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"{field}: {uri!r} names no bucket")
    return bucket, key


def package_read(package_uri: str, partition: str) -> tuple[list[iam.PolicyStatement], str]:
    """The read `make model` needs of a pre-built S3 model package (`model.source.package: s3://bucket/prefix/`):
    s3:GetObject on the objects under that prefix ("To use GetObject, you must have the READ access to the object"),
    and s3:ListBucket on the bucket held to that prefix by the s3:prefix condition, so an absent optional file
    (baseline_predictions.csv) reads as 404, not 403: "If you have the s3:ListBucket permission on the bucket, Amazon
    S3 returns an HTTP status code 404 Not Found error. If you don't have the s3:ListBucket permission, Amazon S3
    returns an HTTP status code 403 Access Denied error" (Amazon S3 API Reference, GetObject, Permissions,
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html); model_container/package.py also lists the
    one key when GetObject answers 403. Returns the statements and the objects' wildcard resource (to acknowledge).

    A package bucket encrypted with a customer managed KMS key also needs kms:Decrypt for the reader ("you need the
    permission to decrypt the AWS KMS key", https://repost.aws/knowledge-center/decrypt-kms-encrypted-objects-s3):
    the config names no such key, so that key's policy must allow the pipeline's Synth role kms:Decrypt (with
    kms:ViaService s3.<region>.amazonaws.com), or the bucket uses SSE-S3 / the aws/s3 key
    (model_container/README.md, "Pre-built packages in S3")."""
    bucket, prefix = _bucket_and_key(package_uri, "model.source.package")
    prefix = prefix.rstrip("/")
    objects = f"arn:{partition}:s3:::{bucket}/{prefix + '/' if prefix else ''}*"
    read = iam.PolicyStatement(actions=["s3:GetObject"], resources=[objects])
    listing = iam.PolicyStatement(
        actions=["s3:ListBucket"],
        resources=[f"arn:{partition}:s3:::{bucket}"],
        conditions={"StringLike": {"s3:prefix": [f"{prefix}/", f"{prefix}/*"] if prefix else ["*"]}},
    )
    return [read, listing], objects


def data_read(data_uri: str, partition: str) -> iam.PolicyStatement:
    """The read `make model` needs of an S3 training CSV (`model.source.data: s3://bucket/key.csv`): s3:GetObject on
    that one object (Amazon S3 API Reference, GetObject, Permissions,
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html). The file is required, so no listing is
    needed; an SSE-KMS bucket's key policy must allow kms:Decrypt as for a package (package_read)."""
    bucket, key = _bucket_and_key(data_uri, "model.source.data")
    if not key or key.endswith("/"):
        raise ValueError(f"model.source.data: {data_uri!r} names no object (s3://bucket/key.csv)")
    return iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"arn:{partition}:s3:::{bucket}/{key}"])


def pipeline_source(scope: Construct, source: PipelineSource) -> pipelines.CodePipelineSource:
    """The source action the config names: a CodeConnections repository, CodeCommit, or a zip in S3."""
    if source.connection_arn:
        return pipelines.CodePipelineSource.connection(
            source.repository, source.branch, connection_arn=source.connection_arn, trigger_on_push=True
        )
    if source.s3_bucket:
        # The bucket must be versioned; each new object version starts the pipeline through EventBridge.
        bucket = s3.Bucket.from_bucket_name(scope, "SourceBucket", source.s3_bucket)
        return pipelines.CodePipelineSource.s3(bucket, source.s3_key, trigger=actions.S3Trigger.EVENTS)
    repository = codecommit.Repository.from_repository_name(scope, "Repository", str(source.codecommit_repository))
    return pipelines.CodePipelineSource.code_commit(repository, source.branch)


# CodeStar Connections was renamed CodeConnections; both service prefixes stay valid, and "when specifying a resource
# in the IAM policy, the service prefix needs to match that of the resource" (Developer Tools console User Guide,
# "Connections rename - Summary of changes").
CONNECTION_PREFIXES = ("codestar-connections", "codeconnections")


def connection_arns(connection_arn: str) -> dict[str, str]:
    """The connection's ARN in each service prefix's form, keyed by prefix."""
    parts = connection_arn.split(":", 5)
    if len(parts) != 6 or parts[2] not in CONNECTION_PREFIXES:
        raise ValueError(f"not a connection ARN: {connection_arn!r} (service must be one of {CONNECTION_PREFIXES})")
    return {prefix: ":".join([*parts[:2], prefix, *parts[3:]]) for prefix in CONNECTION_PREFIXES}


def grant_use_connection(role: iam.Role, connection_arn: str) -> None:
    """UseConnection under both prefixes, each on the ARN in its own form, in the role's default policy.

    CDK's source action grants `codestar-connections:UseConnection` on the ARN as configured, which a
    `codeconnections:` ARN does not match; that grant is dropped from the template, the matched pair replaces it
    (CDK may merge the pair's `codestar-connections` half into its statement: only the mismatched ARN is removed).
    """
    for prefix, arn in connection_arns(connection_arn).items():
        role.add_to_principal_policy(iam.PolicyStatement(actions=[f"{prefix}:UseConnection"], resources=[arn]))
    policy = role.node.find_child("DefaultPolicy")
    assert isinstance(policy, iam.Policy)
    resource = policy.node.default_child
    assert isinstance(resource, iam.CfnPolicy)
    resource.add_property_override("PolicyDocument.Statement", Lazy.uncached_any(_MatchedConnectionGrants(policy)))


def matched_connection_grant(statement: dict[str, Any]) -> dict[str, Any] | None:
    """`statement` without the connection ARNs of the other prefix when it grants one `<prefix>:UseConnection`
    (None when nothing is left); any other statement unchanged."""
    actions = statement.get("Action", [])
    actions = [actions] if isinstance(actions, str) else actions
    if len(actions) != 1 or actions[0] not in {f"{p}:UseConnection" for p in CONNECTION_PREFIXES}:
        return statement
    prefix = actions[0].removesuffix(":UseConnection")
    resources = statement.get("Resource", [])
    resources = [resources] if not isinstance(resources, list) else resources

    def other_prefix(resource: Any) -> bool:
        service = resource.split(":")[2] if isinstance(resource, str) and resource.count(":") >= 5 else None
        return service in CONNECTION_PREFIXES and service != prefix

    kept = [r for r in resources if not other_prefix(r)]
    if not kept:
        return None
    return {**statement, "Resource": kept[0] if len(kept) == 1 else kept}


@jsii.implements(IAnyProducer)
class _MatchedConnectionGrants:
    """The policy's statements at synth, without connection ARNs under the other prefix than the action's."""

    def __init__(self, policy: iam.Policy) -> None:
        self.policy = policy

    def produce(self, context: IResolveContext) -> Any:
        statements = context.resolve(self.policy.document)["Statement"]
        return [kept for s in statements if (kept := matched_connection_grant(s)) is not None]


@jsii.implements(pipelines.ICodePipelineActionFactory)
class NotifyingApprovalStep(pipelines.Step):
    """A manual approval that notifies `topic` and links reviewers to the evidence."""

    def __init__(self, step_id: str, *, topic: sns.ITopic, comment: str, review_url: str) -> None:
        super().__init__(step_id)
        self.topic, self.comment, self.review_url = topic, comment, review_url

    def produce_action(self, stage: Any, options: pipelines.ProduceActionOptions) -> Any:
        stage.add_action(
            actions.ManualApprovalAction(
                action_name=options.action_name,
                run_order=options.run_order,
                notification_topic=self.topic,
                additional_information=self.comment,
                external_entity_link=self.review_url,
            )
        )
        return pipelines.CodePipelineActionFactoryResult(run_orders_consumed=1)


@jsii.implements(pipelines.ICodePipelineActionFactory)
class LambdaInvokeStep(pipelines.Step):
    """Invokes `function` with the synth output as input artifact and JSON `user_parameters`."""

    def __init__(
        self, step_id: str, *, function: lambda_.IFunction, input: pipelines.FileSet, user_parameters: dict[str, Any]
    ) -> None:
        super().__init__(step_id)
        self.function, self.input_files, self.user_parameters = function, input, user_parameters

    def produce_action(self, stage: Any, options: pipelines.ProduceActionOptions) -> Any:
        stage.add_action(
            actions.LambdaInvokeAction(
                action_name=options.action_name,
                run_order=options.run_order,
                lambda_=self.function,
                inputs=[options.artifacts.to_code_pipeline(self.input_files)],
                user_parameters=self.user_parameters,
            )
        )
        return pipelines.CodePipelineActionFactoryResult(run_orders_consumed=1)


def model_monitor_baseline_step(
    step_id: str,
    *,
    source: pipelines.IFileSetProducer,
    environment: EnvironmentSettings,
    access: EnvironmentAccess,
    roles: StepRoles,
    pipeline_prefix: str,
    cdk_out: pipelines.IFileSetProducer,
) -> pipelines.CodeBuildStep:
    """After a deploy with engine model_monitor: the SDK baseline job of this build's model version, in the
    environment's own subnets and keys (read from its inference stack), waited for. SageMaker starts jobs in the
    caller's account only: the step runs as the environment's role, in its account and region."""
    prefix, region, account, partition = environment.resource_prefix(), access.region, access.account, access.partition
    endpoint = f"{prefix}-endpoint"
    bucket = f"{prefix}-monitoring-{account}-{region}"
    stack_arn = access.arn("cloudformation", f"stack/{prefix}-inference/*")
    objects = f"arn:{partition}:s3:::{bucket}/model-monitor/{endpoint}/*"
    keys = access.arn("kms", "key/*")
    jobs = access.arn("sagemaker", f"processing-job/{endpoint}-baseline-*")
    return environment_step(
        step_id,
        access=access,
        roles=roles,
        pipeline_prefix=pipeline_prefix,
        input=source,
        additional_inputs={"cdk.out": cdk_out},
        commands=[
            *USE_PACKAGED_MODEL,
            f".venv/bin/python -m scripts.model_monitor_baseline --environment {environment.name} "
            f"--stack {prefix}-inference --region {region} --wait",
        ],
        statements=[
            iam.PolicyStatement(actions=["cloudformation:DescribeStacks"], resources=[stack_arn]),
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[objects]),
            # The monitoring bucket encrypts with the environment's data key, known here by its alias only.
            iam.PolicyStatement(
                actions=["kms:GenerateDataKey"],
                resources=[keys],
                conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/{prefix}/data"}},
            ),
            iam.PolicyStatement(
                actions=["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:AddTags"],
                resources=[jobs],
            ),
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[f"arn:{partition}:iam::{account}:role/{prefix}-model-monitor"],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
        ],
        wildcards=[stack_arn, objects, keys, jobs],
    )


# ---- model registry and approvals ---------------------------------------------------------------------------
EXECUTION_ID = "#{codepipeline.PipelineExecutionId}"
# Set at start-pipeline-execution for an audited emergency deploy (README "Approvals").
EMERGENCY_VARIABLES = (
    ("EMERGENCY_OVERRIDE", "false", "true: the approvals are answered by an audited emergency override"),
    ("EMERGENCY_REASON", "none", "why the emergency override (at least 10 characters), recorded with the release"),
)
REGISTER_PACKAGE = "RegisterModelPackage"
PACKAGE_ARN_VARIABLE = "MODEL_PACKAGE_ARN"


@dataclass(frozen=True)
class RegistryTarget:
    """The model package group the pipeline registers into: production's StepAccess stack (model_registry.py)."""

    group: str
    group_arn: str
    versions_arn: str
    account: str
    region: str


@dataclass(frozen=True)
class PipelineCoordinates:
    """The pipeline, the stage holding the approvals, and its ARN pieces (for scoped CodePipeline grants)."""

    name: str
    stage: str
    arn: str

    def action_arn(self, action: str) -> str:
        """PutApprovalResult's resource: arn:...:<pipeline>/<stage>/<action> (Service Authorization Reference)."""
        return f"{self.arn}/{self.stage}/{action}"


def _script(command: str, *arguments: str) -> str:
    return " ".join([".venv/bin/python -m scripts.register_model_package", command, *arguments])


def register_model_package_step(
    *,
    source: pipelines.IFileSetProducer,
    gate: pipelines.FileSet,
    cdk_out: pipelines.FileSet,
    assembly: str,
    registry: RegistryTarget,
    metrics_bucket: str,
    data_key_alias: str,
    pipeline: PipelineCoordinates,
    access: EnvironmentAccess,
    roles: StepRoles,
    pipeline_prefix: str,
) -> pipelines.CodeBuildStep:
    """After the model gate: this build's model package, pending manual approval, with the gate's report as its
    metrics; exports MODEL_PACKAGE_ARN. The registry is production's: the step runs as production's role."""
    objects = f"arn:{access.partition}:s3:::{metrics_bucket}/model-registry/*"
    keys = access.arn("kms", "key/*")
    resources = [registry.group_arn, registry.versions_arn]
    return environment_step(
        REGISTER_PACKAGE,
        access=access,
        roles=roles,
        pipeline_prefix=pipeline_prefix,
        input=source,
        additional_inputs={"gate": gate, "cdk.out": cdk_out},
        env={"PIPELINE_EXECUTION_ID": EXECUTION_ID},
        commands=[
            "make deps",
            _script(
                "register",
                f"--region {registry.region} --account {registry.account} --group {registry.group}",
                f"--assembly cdk.out/{assembly} --metadata gate/metadata.json --gate-report gate/model-gate.json",
                f"--metrics-bucket {metrics_bucket} --arn-out model-package.arn",
                f'--generated-by "codepipeline:{pipeline.name}/execution/$PIPELINE_EXECUTION_ID"',
            ),
            f"export {PACKAGE_ARN_VARIABLE}=$(cat model-package.arn)",
        ],
        statements=[
            # ListModelPackages and DescribeModelPackage find a build registered before (the idempotent retry).
            iam.PolicyStatement(actions=["sagemaker:ListModelPackages"], resources=resources),
            iam.PolicyStatement(actions=["sagemaker:DescribeModelPackage"], resources=[registry.versions_arn]),
            # A build registers pending manual approval, never approved.
            iam.PolicyStatement(
                actions=["sagemaker:CreateModelPackage"],
                resources=resources,
                conditions={"StringEquals": {"sagemaker:ModelApprovalStatus": "PendingManualApproval"}},
            ),
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[objects]),
            # The registry's metrics bucket encrypts with the registry's key, known here by its alias only.
            iam.PolicyStatement(
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[keys],
                conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": data_key_alias}},
            ),
        ],
        wildcards=[registry.versions_arn, objects, keys],
    )


def approval_shortcuts_step(
    *,
    source: pipelines.IFileSetProducer,
    package_arn: str,
    registry: RegistryTarget,
    pipeline: PipelineCoordinates,
    model_approval: str,
    approvals: Sequence[str],
) -> pipelines.CodeBuildStep:
    """Beside the approvals: a package already decided in the registry answers the model approval, and an
    EMERGENCY_OVERRIDE run started by a person with a reason answers all of them."""
    context = f"--region {registry.region} --pipeline {pipeline.name} --stage {pipeline.stage}"
    return pipelines.CodeBuildStep(
        "ApprovalShortcuts",
        input=source,
        env={
            PACKAGE_ARN_VARIABLE: package_arn,
            "PIPELINE_EXECUTION_ID": EXECUTION_ID,
            **{name: f"#{{variables.{name}}}" for name, _, _ in EMERGENCY_VARIABLES},
        },
        commands=[
            "make deps",
            _script(
                "registry-decision",
                context,
                f'--execution-id "$PIPELINE_EXECUTION_ID" --package-arn "${PACKAGE_ARN_VARIABLE}"',
                f"--action {model_approval}",
            ),
            _script(
                "override",
                context,
                f'--execution-id "$PIPELINE_EXECUTION_ID" --actions {",".join(approvals)}',
                '--override "$EMERGENCY_OVERRIDE" --reason "$EMERGENCY_REASON"',
            ),
        ],
        role_policy_statements=[
            iam.PolicyStatement(
                actions=["codepipeline:GetPipelineState", "codepipeline:GetPipelineExecution"],
                resources=[pipeline.arn],
            ),
            iam.PolicyStatement(
                actions=["codepipeline:PutApprovalResult"], resources=[pipeline.action_arn(a) for a in approvals]
            ),
            iam.PolicyStatement(actions=["sagemaker:DescribeModelPackage"], resources=[registry.versions_arn]),
        ],
    )


def model_package_approval_step(
    *,
    source: pipelines.IFileSetProducer,
    package_arn: str,
    registry: RegistryTarget,
    pipeline: PipelineCoordinates,
    model_approval: str,
) -> pipelines.CodeBuildStep:
    """After the approvals: the model approval's result (who, and their comment) approves the package."""
    return pipelines.CodeBuildStep(
        "ModelPackageApproval",
        input=source,
        env={PACKAGE_ARN_VARIABLE: package_arn, "PIPELINE_EXECUTION_ID": EXECUTION_ID},
        commands=[
            "make deps",
            _script(
                "approve",
                f"--region {registry.region} --pipeline {pipeline.name} --stage {pipeline.stage}",
                f'--execution-id "$PIPELINE_EXECUTION_ID" --package-arn "${PACKAGE_ARN_VARIABLE}"',
                f"--action {model_approval}",
            ),
        ],
        role_policy_statements=[
            iam.PolicyStatement(actions=["codepipeline:GetPipelineState"], resources=[pipeline.arn]),
            iam.PolicyStatement(actions=["sagemaker:DescribeModelPackage"], resources=[registry.versions_arn]),
            # This step only ever approves; rejections come from the registry or the approval itself.
            iam.PolicyStatement(
                actions=["sagemaker:UpdateModelPackage"],
                resources=[registry.versions_arn],
                conditions={"StringEquals": {"sagemaker:ModelApprovalStatus": "Approved"}},
            ),
        ],
    )


def model_package_check_step(
    *,
    source: pipelines.IFileSetProducer,
    cdk_out: pipelines.FileSet,
    assembly: str,
    package_arn: str,
    registry: RegistryTarget,
    access: EnvironmentAccess,
    roles: StepRoles,
    pipeline_prefix: str,
) -> pipelines.CodeBuildStep:
    """Right before production changes: exit non-zero unless the package is Approved and describes the model
    this deploy ships (image and model data). Reads production's registry as production's role."""
    return environment_step(
        "ModelPackageCheck",
        access=access,
        roles=roles,
        pipeline_prefix=pipeline_prefix,
        input=source,
        additional_inputs={"cdk.out": cdk_out},
        env={PACKAGE_ARN_VARIABLE: package_arn},
        commands=[
            "make deps",
            _script(
                "check",
                f"--region {registry.region} --account {registry.account}",
                f'--package-arn "${PACKAGE_ARN_VARIABLE}" --assembly cdk.out/{assembly}',
            ),
        ],
        statements=[
            iam.PolicyStatement(actions=["sagemaker:DescribeModelPackage"], resources=[registry.versions_arn]),
        ],
        wildcards=[registry.versions_arn],
    )


@dataclass(frozen=True)
class RetrainingInputs:
    """What the Synth step's retraining (scripts/retrain.py run) and lineage (retrain.py lineage) builds read and
    write: production's release table, published baselines, capture and ground truth and the configured dataset
    (through production's profile, in its account and region), and the pipeline's own artifacts bucket and key for
    the snapshot (with the step's own role)."""

    endpoint: str
    releases_table_arn: str
    production_artifacts: str
    capture_bucket: str
    capture_prefix: str
    ground_truth_prefix: str | None
    dataset_uri: str | None
    data_key_alias: str
    data_keys_arn: str
    upload_bucket: str
    upload_objects_arn: str
    upload_key_arn: str
    profile: str
    region: str
    model_source: str = "model.source (cdk.json)"  # model_source_description: what a push run builds without lineage


def model_source_description(environment: EnvironmentSettings | None) -> str:
    """The configured model source, as the Synth step's log names it (cdk.json model.source)."""
    source = getattr(getattr(environment, "model", None), "source", None)
    if getattr(source, "package", None):
        return f"model.source.package {source.package}"  # type: ignore[union-attr]
    if getattr(source, "train", None):
        return f"model.source train {source.train} on data {source.data}"  # type: ignore[union-attr]
    return "model.source (cdk.json)"


def retraining_commands(inputs: RetrainingInputs, training: Any) -> tuple[list[str], list[str]]:
    """Before `make synth`: the retrained build when RETRAINING=true, else the live model's lineage rebuilt (a push
    build trains on what the live model was trained on); after it: that build is still what synth packaged.

    A failing command fails the step, so exit 5 (unchanged) or 4 (refused) stops a retraining run there. A push
    run that cannot assume production's Synth role, for whatever reason (on the first run the StepAccess stage has
    not created it yet), builds the configured model source (cdk.json model.source) and says which; the model gate,
    which reads production strictly after StepAccess, then judges that build against the live model when there is
    one.

    With `training.runner: sagemaker` the retraining run trains as a SageMaker training job in production, with
    the arguments production's inference stack gives as its output (`--training-stack`, read through production's
    profile): a run before that stack has the runner (a first run, or the first after switching to sagemaker) trains
    in the build and says so. A push run's lineage build trains in the build either way (it rebuilds a model
    already trained once, on the snapshot the live model names)."""
    table = inputs.releases_table_arn.rsplit("/", 1)[1]
    commit = "--commit $CODEBUILD_RESOLVED_SOURCE_VERSION"
    live = [
        f"--endpoint {inputs.endpoint}",
        f"--table {table}",
        f"--artifacts-bucket {inputs.production_artifacts}",
        f"--environment-profile {inputs.profile} --environment-region {inputs.region}",
    ]
    args = [
        *live,
        f"--days {training.capture_days} --min-rows {training.min_rows}",
        f"--min-class-fraction {training.min_class_fraction} --holdout-fraction {training.holdout_fraction}",
        # The pipeline's bucket and key are tokens: the project's environment carries them (upload_environment).
        '--upload "s3://$RETRAINING_UPLOAD_BUCKET/datasets/" --kms-key-id "$RETRAINING_UPLOAD_KEY"',
        commit,
    ]
    if training.runner == "sagemaker":
        # ModelEndpoint names the endpoint <prefix>-endpoint, InferenceStack's stack is <prefix>-inference.
        args.append(f"--runner sagemaker --training-stack {inputs.endpoint.removesuffix('-endpoint')}-inference")
    if inputs.dataset_uri:
        args.append(f"--dataset-uri {inputs.dataset_uri}")
    if inputs.ground_truth_prefix:
        labels = inputs.ground_truth_prefix.strip("/") + "/"
        args.append(f"--capture-uri s3://{inputs.capture_bucket}/{inputs.capture_prefix}")
        args.append(f"--labels-uri s3://{inputs.capture_bucket}/{labels}")
    retrain = ".venv/bin/python -m scripts.retrain run " + " ".join(args)
    lineage = ".venv/bin/python -m scripts.retrain lineage " + " ".join(live) + " " + commit
    first_run = "echo " + shlex.quote(
        "Synth: cannot assume the production Synth role (a first run creates it in its StepAccess stage): building "
        f"{inputs.model_source} as configured, without the live model's lineage"
    )
    push = f"if aws sts get-caller-identity --profile {inputs.profile} >/dev/null; then {lineage}; else {first_run}; fi"
    before = [f'make deps && if [ "$RETRAINING" = "true" ]; then {retrain}; else {push}; fi']
    after = ["if [ -f build/retrained.json ]; then .venv/bin/python -m scripts.retrain verify; fi"]
    return before, after


def upload_environment(inputs: RetrainingInputs) -> dict[str, codebuild.BuildEnvironmentVariable]:
    """The snapshot's bucket and key, in the Synth project's environment (tokens resolve there, not in commands)."""
    return {
        "RETRAINING_UPLOAD_BUCKET": codebuild.BuildEnvironmentVariable(value=inputs.upload_bucket),
        "RETRAINING_UPLOAD_KEY": codebuild.BuildEnvironmentVariable(value=inputs.upload_key_arn),
    }


@dataclass(frozen=True)
class RetrainingPolicy:
    """The Synth step's grants: in production (its role there) and on the pipeline's own snapshot store (the step's
    role), each with the prefix wildcards among them (to acknowledge)."""

    production: list[iam.PolicyStatement]
    production_wildcards: list[str]
    pipeline: list[iam.PolicyStatement]
    pipeline_wildcards: list[str]


def retraining_policy(inputs: RetrainingInputs, partition: str) -> RetrainingPolicy:
    """What scripts/retrain.py run and lineage do: read production, keep and read back the snapshot."""
    reads: list[tuple[str, str]] = [(inputs.production_artifacts, "baselines/")]
    if inputs.ground_truth_prefix:
        reads += [
            (inputs.capture_bucket, inputs.capture_prefix),
            (inputs.capture_bucket, inputs.ground_truth_prefix.strip("/") + "/"),
        ]
    if inputs.dataset_uri:
        bucket, _, key = inputs.dataset_uri.removeprefix("s3://").partition("/")
        reads.append((bucket, key))
    objects = [f"arn:{partition}:s3:::{bucket}/{key}*" for bucket, key in reads]
    production = [
        iam.PolicyStatement(
            actions=["dynamodb:Query"],
            resources=[inputs.releases_table_arn, f"{inputs.releases_table_arn}/index/status-index"],
        ),
        iam.PolicyStatement(actions=["s3:GetObject"], resources=objects),
        # The live model's folder is found by listing baselines/<hash> (scripts/model_gate.py, dataset cli).
        *(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[f"arn:{partition}:s3:::{bucket}"],
                conditions={"StringLike": {"s3:prefix": [f"{key}*"]}},
            )
            for bucket, key in reads
        ),
        # Production's capture, baselines and table are encrypted with its data key, known here by alias only.
        iam.PolicyStatement(
            actions=["kms:Decrypt"],
            resources=[inputs.data_keys_arn],
            conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": inputs.data_key_alias}},
        ),
    ]
    pipeline = [
        # Kept by a retraining run, read back by the next push build's lineage (datasets/<sha256>/).
        iam.PolicyStatement(actions=["s3:PutObject", "s3:GetObject"], resources=[inputs.upload_objects_arn]),
        # An SSE-KMS upload asks KMS for a data key (S3 User Guide, "Using server-side encryption with AWS KMS
        # keys (SSE-KMS)": "s3:PutObject ... kms:GenerateDataKey"); reading it back decrypts.
        iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[inputs.upload_key_arn]),
    ]
    return RetrainingPolicy(production, [*objects, inputs.data_keys_arn], pipeline, [inputs.upload_objects_arn])

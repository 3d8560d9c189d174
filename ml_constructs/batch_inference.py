"""Batch inference: SageMaker Batch Transform jobs of the endpoint's model, run by a Step Functions state machine."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs_lib
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from ml_constructs.encrypted_logs import LogPolicy
from ml_constructs.endpoint_alarms import topic_alarm
from ml_constructs.model_endpoint import ModelEndpoint, ModelRelease
from ml_constructs.nag import acknowledge, wildcard_finding
from model_container.card import BINARY, MULTICLASS, REGRESSION
from platform_config.settings import BatchSettings

# Step Functions Developer Guide, "IAM policies for ... Amazon SageMaker AI" (CreateTransformJob, synchronous):
# the .sync integration watches the job through this managed EventBridge rule of the account.
SYNC_RULE = "StepFunctionsGetEventsForSageMakerTransformJobsRule"
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"
UUID_LENGTH = 36
# ModelClientConfig: our container answers a 1 MB mini-batch in ~70 ms (model_container/server/batch.py); the
# model's SAGEMAKER_MODEL_SERVER_TIMEOUT is 60 s. One retry covers a worker restart, not a bad record (400 again).
INVOCATION_TIMEOUT_S = 60
INVOCATION_RETRIES = 1


def claim_transform_log_group(scope: Construct, prefix: str) -> None:
    """`claim_account_log_group` of /aws/sagemaker/TransformJobs."""
    claim_account_log_group(scope, TRANSFORM_LOG_GROUP, prefix, "BatchInference owns_transform_log_group")


def claim_account_log_group(scope: Construct, group_name: str, prefix: str, switch: str) -> None:
    """Record that environment `prefix` owns the fixed-name log group `group_name` (SageMaker's, one per account
    and region) in its stack's account and region; raise if another environment of this app already does.
    CloudFormation cannot create a log group whose name exists (names are unique per account and region), so a
    second owner would fail its deploy or, once the first is deleted, take over its logs. An unresolved account
    (an environment-agnostic stack) counts as the same account: only one such environment may own the group."""
    stack = Stack.of(scope)
    root = scope.node.root
    claims: dict[tuple[str, str, str], str] = getattr(root, "_account_log_group_claims", {})
    owner = claims.setdefault((group_name, stack.account, stack.region), prefix)
    if owner != prefix:
        raise ValueError(
            f"{group_name} is one log group per account and region, and {owner} already owns it where "
            f"{prefix} would create it too: let only one environment per account and region own it "
            f"({switch}=False for the others; they then log to the owner's group)"
        )
    setattr(root, "_account_log_group_claims", claims)  # noqa: B010 (a plain attribute of the app object)


def output_fields(release: ModelRelease, content_type: str) -> str:
    """An output line's fields, in order, for the model's task: its text/csv columns (a multiclass model's one
    probability per class, named by the card's labels) or its JSON Lines object's keys."""
    csv = content_type == "text/csv"
    fields = {
        BINARY: ("label", "probability"),
        MULTICLASS: ("label", *release.label_names) if csv else ("label", "probabilities"),
        REGRESSION: ("value",),
    }
    return ",".join((*fields[release.task], "model_version"))


class BatchInference(Construct):
    """The `{prefix}-batch` state machine: one SageMaker Batch Transform job of the endpoint's model per execution.

    Why Step Functions and not a pipeline stage: a batch run is an operational job, started on a schedule
    (EventBridge Scheduler) or by an operator (`python -m scripts.batch_transform start`), not by a code change;
    the optimized `createTransformJob.sync` integration waits for the job without polling code, stops the job
    when the execution is stopped or times out, and hands its outcome to a report step; failed and timed-out
    executions are a CloudWatch metric an alarm watches. A pipeline stage would tie batch runs to releases and
    hold the pipeline for the length of a job.

    An execution takes `{"input": "s3://<artifacts bucket>/<input_prefix>..."}` (optional: the whole input prefix;
    anything outside it is refused) and writes `s3://<artifacts bucket>/<output_prefix><execution name>/`, one
    `<file>.out` per input file with one prediction line per input line (AssembleWith=Line), its fields those of
    the model's task (`output_fields`, in the execution's report: binary `label,probability,model_version`,
    multiclass `label,<one probability per class>,model_version`, regression `value,model_version`). The job runs the
    endpoint's model as it is - same image, network isolation and VPC config - with SplitType=Line, MultiRecord,
    the data key for the output objects (TransformOutput.KmsKeyId) and the instance volumes
    (TransformResources.VolumeKmsKeyId). It reports to `topic`: a summary on success, the error and cause on
    failure; the `{prefix}-batch-failed` alarm fires on failed or timed-out executions.

    Permissions. The model's execution role (the endpoint's) gets what the job needs besides what it has already
    (KMS, VPC, image, model data): read the input prefix, write the output prefix, log to SageMaker's
    `/aws/sagemaker/TransformJobs` group. That group is one per account and region: unowned, SageMaker creates it on
    the first job without a KMS key and keeps it forever. With `owns_transform_log_group` (the default) this stack
    creates it with the logs key and the environment's retention (`transform_log_group`), and the model's role may
    no longer create it; one environment per account and region may own it, and synth refuses a second owner in the
    same app (see `claim_transform_log_group`). The state machine's role may create, describe,
    stop and tag transform jobs named `{prefix}-batch-*` only of this model, with the data key for volumes and
    output and the configured instance type, and manage the .sync rule; no iam:PassRole - CreateTransformJob
    passes no role (the model carries its own; Service Authorization Reference: its only dependent action is
    sagemaker:AddTags). Step Functions' own CloudWatch Logs delivery and X-Ray statements need "*" (Step
    Functions Developer Guide, "IAM policies for logging to CloudWatch Logs"; the actions have no resource type).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        settings: BatchSettings,
        model_endpoint: ModelEndpoint,
        bucket_name: str,
        data_key: kms.IKey,
        topic: sns.ITopic,
        topic_key: kms.IKey,
        logs: LogPolicy,
        owns_transform_log_group: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.name = f"{prefix}-batch"
        self.transform_log_group: logs_lib.LogGroup | None = None
        if owns_transform_log_group:
            claim_transform_log_group(self, prefix)
            # CloudWatch Logs User Guide, "Encrypt log data in CloudWatch Logs using AWS Key Management Service": the
            # key policy admits logs.<region>.amazonaws.com with kms:EncryptionContext:aws:logs:arn of the group, as
            # the logs key's policy does for every group of this account and region (platform_keys.py).
            self.transform_log_group = logs.group(self, "TransformJobLogs", TRANSFORM_LOG_GROUP)
        self.job_prefix = f"{self.name}-"
        if len(self.job_prefix) + UUID_LENGTH > 63:  # CreateTransformJob: TransformJobName, at most 63 characters
            raise ValueError(f"transform job names {self.job_prefix}<uuid> exceed 63 characters: shorten {prefix!r}")
        self.settings = settings
        self.output_fields = output_fields(model_endpoint.release, settings.content_type)
        self.model_name = model_endpoint.model.model_name
        assert self.model_name is not None  # named by ModelEndpoint (physical_names.py)
        bucket_arn = f"arn:{stack.partition}:s3:::{bucket_name}"
        self.input_uri = f"s3://{bucket_name}/{settings.input_prefix}"
        self.output_uri = f"s3://{bucket_name}/{settings.output_prefix}"
        self.job_arns = stack.format_arn(
            service="sagemaker", resource="transform-job", resource_name=f"{self.job_prefix}*"
        )

        model_policy = self._allow_model_role(
            stack, model_endpoint.role, bucket_arn, settings, create_log_group=not owns_transform_log_group
        )
        # CreateModel checks its role when it runs: the model waits for every policy of that role (aws/aws-cdk#10064).
        model_endpoint.model.node.add_dependency(model_policy)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "states.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description=f"Runs the SageMaker Batch Transform jobs of {self.name}",
        )
        self.policy = self._state_machine_policy(stack, data_key, topic, topic_key)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.name,
            definition_body=sfn.DefinitionBody.from_chainable(self._definition(topic, data_key)),
            # An immutable view: the L2 adds no inline policy (IAMNoInlinePolicy); `policy` holds every permission.
            role=self.role.without_policy_updates(),
            timeout=Duration.minutes(settings.timeout_minutes),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=logs.group(self, "Logs", f"/aws/vendedlogs/states/{self.name}"),
                level=sfn.LogLevel.ALL,
                include_execution_data=True,
            ),
        )
        # Step Functions checks at creation that the role may deliver logs to the group.
        self.state_machine.node.add_dependency(self.policy)
        self.alarm = topic_alarm(
            self,
            "FailedAlarm",
            topic=topic,
            alarm_name=f"{self.name}-failed",
            metric=cloudwatch.MathExpression(
                expression="FILL(failed, 0) + FILL(timedout, 0)",
                using_metrics={
                    "failed": self.state_machine.metric_failed(period=Duration.minutes(5), statistic="Sum"),
                    "timedout": self.state_machine.metric_timed_out(period=Duration.minutes(5), statistic="Sum"),
                },
                label="Failed or timed-out batch executions",
                period=Duration.minutes(5),
            ),
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            description=f"A {self.name} execution failed or timed out: its report on the topic and the execution's "
            "history say why (python -m scripts.batch_transform status EXECUTION).",
        )
        self.schedule = self._schedule(settings.schedule) if settings.schedule else None

    # --- the model's execution role ---------------------------------------------------------------------------
    def _allow_model_role(
        self, stack: Stack, role: iam.IRole, bucket_arn: str, settings: BatchSettings, *, create_log_group: bool
    ) -> iam.ManagedPolicy:
        """What the model's role needs for a transform job (SageMaker Developer Guide, "SageMaker Roles":
        CreateModel/CreateTrainingJob execution role permissions - S3 input/output, CloudWatch Logs)."""
        logs_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{TRANSFORM_LOG_GROUP}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        # Stream names are `<job name>/<instance id>` (and `.../data-log`).
        streams_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{TRANSFORM_LOG_GROUP}:log-stream:{self.job_prefix}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        inputs, outputs = f"{bucket_arn}/{settings.input_prefix}*", f"{bucket_arn}/{settings.output_prefix}*"
        policy = iam.ManagedPolicy(
            self,
            "ModelRolePolicy",
            roles=[role],
            description=f"Batch Transform jobs of {self.name}: input, output and job logs",
            statements=[
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{settings.input_prefix}*"]}},
                ),
                iam.PolicyStatement(actions=["s3:GetObject"], resources=[inputs]),
                # Results are uploaded in multipart uploads, aborted when the job fails ("Use Batch Transform",
                # Batch Transform Errors).
                iam.PolicyStatement(actions=["s3:PutObject", "s3:AbortMultipartUpload"], resources=[outputs]),
                # Where this stack owns the group, SageMaker must not create one of its own (unencrypted) when a job
                # starts before the stack's group exists, or after someone deleted it.
                iam.PolicyStatement(
                    actions=[*(["logs:CreateLogGroup"] if create_log_group else []), "logs:DescribeLogStreams"],
                    resources=[logs_arn],
                ),
                iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[streams_arn]),
            ],
        )
        acknowledge(
            policy,
            [wildcard_finding(stack, arn) for arn in (inputs, outputs, logs_arn, streams_arn)],
            "Object keys under the batch input and output prefixes, and log streams SageMaker names after each "
            "job, are not known at synth; each wildcard stays inside this environment's prefix.",
        )
        return policy

    # --- the state machine's role -----------------------------------------------------------------------------
    def _state_machine_policy(
        self, stack: Stack, data_key: kms.IKey, topic: sns.ITopic, topic_key: kms.IKey
    ) -> iam.ManagedPolicy:
        model_arn = stack.format_arn(service="sagemaker", resource="model", resource_name=self.model_name)
        sync_rule = stack.format_arn(service="events", resource="rule", resource_name=SYNC_RULE)
        policy = iam.ManagedPolicy(
            self,
            "Policy",
            roles=[self.role],
            description=f"{self.name}: its transform jobs, their .sync rule and its report",
            statements=[
                # Service Authorization Reference, Amazon SageMaker AI: CreateTransformJob takes the condition keys
                # sagemaker:ModelArn, VolumeKmsKey, OutputKmsKey (ARN) and InstanceTypes (ArrayOfString).
                iam.PolicyStatement(
                    actions=["sagemaker:CreateTransformJob"],
                    resources=[self.job_arns],
                    conditions={
                        "ArnEquals": {
                            "sagemaker:ModelArn": model_arn,
                            "sagemaker:VolumeKmsKey": data_key.key_arn,
                            "sagemaker:OutputKmsKey": data_key.key_arn,
                        },
                        "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": [self.settings.instance_type]},
                    },
                ),
                iam.PolicyStatement(
                    actions=[
                        "sagemaker:AddTags",
                        "sagemaker:DescribeTransformJob",
                        "sagemaker:StopTransformJob",
                        "sagemaker:ListTags",
                    ],
                    resources=[self.job_arns],
                ),
                iam.PolicyStatement(
                    actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"], resources=[sync_rule]
                ),
                iam.PolicyStatement(actions=["sns:Publish"], resources=[topic.topic_arn]),
                # SNS Developer Guide, "Encryption at rest": publishers to an encrypted topic use its key.
                iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[topic_key.key_arn]),
                # Step Functions Developer Guide, "IAM policies for logging to CloudWatch Logs" and "IAM policies for
                # using AWS X-Ray in Step Functions": none of these actions has a resource type.
                iam.PolicyStatement(
                    actions=[
                        "logs:CreateLogDelivery",
                        "logs:GetLogDelivery",
                        "logs:UpdateLogDelivery",
                        "logs:DeleteLogDelivery",
                        "logs:ListLogDeliveries",
                        "logs:PutResourcePolicy",
                        "logs:DescribeResourcePolicies",
                        "logs:DescribeLogGroups",
                    ],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    actions=[
                        "xray:PutTraceSegments",
                        "xray:PutTelemetryRecords",
                        "xray:GetSamplingRules",
                        "xray:GetSamplingTargets",
                    ],
                    resources=["*"],
                ),
            ],
        )
        acknowledge(
            policy,
            (wildcard_finding(stack, self.job_arns),),
            "Every execution creates a transform job with a new name (<prefix>-batch-<uuid>): the names are not known "
            "at synth, and creation is further held to this model, the data key and the configured instance type.",
        )
        acknowledge(
            policy,
            ("AwsSolutions-IAM5[Resource::*]",),
            "Step Functions' CloudWatch Logs delivery and X-Ray actions have no resource type in IAM, so they take '*' "
            "(Step Functions Developer Guide, 'IAM policies for logging to CloudWatch Logs'); the log group and the "
            "tracing are what the nag packs require of a state machine.",
        )
        return policy

    # --- the definition ---------------------------------------------------------------------------------------
    def _definition(self, topic: sns.ITopic, data_key: kms.IKey) -> sfn.IChainable:
        refused = sfn.Fail(
            self,
            "InputOutsidePrefix",
            error="InvalidInput",
            cause=f"input must be an S3 prefix under {self.input_uri}",
        )
        prepare = sfn.Pass(
            self,
            "Prepare",
            parameters={
                "input.$": "$.input",
                "job_name.$": f"States.Format('{self.job_prefix}{{}}', States.UUID())",
                "output.$": f"States.Format('{self.output_uri}{{}}/', $$.Execution.Name)",
                "execution.$": "$$.Execution.Name",
                # What each output line holds for this model's task (its card's), for whoever reads the report.
                "output_fields": self.output_fields,
            },
        )
        default_input = sfn.Pass(self, "WholeInputPrefix", result=sfn.Result.from_object({"input": self.input_uri}))
        check_input = (
            sfn.Choice(self, "CheckInput")
            .when(sfn.Condition.string_matches("$.input", f"{self.input_uri}*"), prepare)
            .otherwise(refused)
        )
        start = (
            sfn.Choice(self, "HasInput")
            .when(sfn.Condition.is_present("$.input"), check_input)
            .otherwise(default_input.next(prepare))
        )
        transform = sfn.CustomState(self, "Transform", state_json=self._transform_state(data_key))
        report_success = tasks.SnsPublish(
            self,
            "ReportSuccess",
            topic=topic,
            subject=f"{self.name}: transform job completed",
            message=sfn.TaskInput.from_text(sfn.JsonPath.json_to_string(sfn.JsonPath.entire_payload)),
            result_path=sfn.JsonPath.DISCARD,
        )
        report_failure = tasks.SnsPublish(
            self,
            "ReportFailure",
            topic=topic,
            subject=f"{self.name}: transform job FAILED",
            message=sfn.TaskInput.from_text(sfn.JsonPath.json_to_string(sfn.JsonPath.entire_payload)),
            result_path=sfn.JsonPath.DISCARD,
        )
        failed = sfn.Fail(self, "BatchFailed", error_path="$.failure.Error", cause_path="$.failure.Cause")
        transform.add_catch(report_failure.next(failed), errors=["States.ALL"], result_path="$.failure")
        prepare.next(transform).next(report_success).next(sfn.Succeed(self, "Done"))
        return start

    def _transform_state(self, data_key: kms.IKey) -> dict[str, Any]:
        """CreateTransformJob through the optimized .sync integration (Step Functions Developer Guide, "Create and
        manage Amazon SageMaker AI jobs with Step Functions"); request fields as in the SageMaker API reference,
        CreateTransformJob. Unset payload and concurrency are left to the container's /execution-parameters."""
        settings = self.settings
        tuning: dict[str, Any] = {}
        if settings.max_payload_mb is not None:
            tuning["MaxPayloadInMB"] = settings.max_payload_mb
        if settings.max_concurrent_transforms is not None:
            tuning["MaxConcurrentTransforms"] = settings.max_concurrent_transforms
        return {
            "Type": "Task",
            "Resource": f"arn:{Stack.of(self).partition}:states:::sagemaker:createTransformJob.sync",
            "Parameters": {
                "TransformJobName.$": "$.job_name",
                "ModelName": self.model_name,
                "BatchStrategy": "MultiRecord",
                **tuning,
                "ModelClientConfig": {
                    "InvocationsTimeoutInSeconds": INVOCATION_TIMEOUT_S,
                    "InvocationsMaxRetries": INVOCATION_RETRIES,
                },
                "TransformInput": {
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": "$.input"}},
                    "ContentType": settings.content_type,
                    "SplitType": "Line",
                    "CompressionType": "None",
                },
                "TransformOutput": {
                    "S3OutputPath.$": "$.output",
                    "Accept": settings.content_type,
                    "AssembleWith": "Line",
                    "KmsKeyId": data_key.key_arn,
                },
                "TransformResources": {
                    "InstanceType": settings.instance_type,
                    "InstanceCount": settings.instance_count,
                    "VolumeKmsKeyId": data_key.key_arn,
                },
                "Tags": [{"Key": "execution", "Value.$": "$.execution"}],
            },
            # The .sync result is DescribeTransformJob's response; keep what the report and the operator need.
            "ResultSelector": {
                "job_name.$": "$.TransformJobName",
                "status.$": "$.TransformJobStatus",
                "output.$": "$.TransformOutput.S3OutputPath",
                "model.$": "$.ModelName",
            },
            "ResultPath": "$.transform",
        }

    def _schedule(self, expression: str) -> scheduler.Schedule:
        """EventBridge Scheduler starts an execution over the whole input prefix; its role may start this state
        machine only, and only for schedules of this account (EventBridge Scheduler User Guide, "Set up the
        execution role": aws:SourceAccount against the confused deputy)."""
        stack = Stack.of(self)
        role = iam.Role(
            self,
            "ScheduleRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description=f"Starts {self.name} on its schedule",
        )
        iam.ManagedPolicy(
            self,
            "SchedulePolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(actions=["states:StartExecution"], resources=[self.state_machine.state_machine_arn])
            ],
        )
        return scheduler.Schedule(
            self,
            "Schedule",
            schedule_name=self.name,
            description=f"Runs {self.name} over {self.input_uri}",
            schedule=scheduler.ScheduleExpression.expression(expression),
            target=scheduler_targets.StepFunctionsStartExecution(
                self.state_machine,
                input=scheduler.ScheduleTargetInput.from_object({"input": self.input_uri}),
                role=role.without_policy_updates(),
            ),
        )

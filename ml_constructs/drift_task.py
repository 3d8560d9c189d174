"""The built-in drift job as an hourly ECS Fargate task, for capture volumes beyond a Lambda's 15 minutes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from aws_cdk import CfnElement, Duration, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from ml_constructs.encrypted_logs import encrypted_log_group
from ml_constructs.nag import acknowledge, wildcard_finding
from ml_constructs.platform_function import FunctionPlacement, terminal_dead_letter_queue

UNPRIVILEGED_USER = "65534"  # nobody: the job reads and writes only through AWS APIs and /tmp


class DriftTask(Construct):
    """Cluster, task definition (the drift image, entry point `python -m drift_engine.task`), schedule.

    Exposes `cluster`, `task_definition`, `policy` (the task role's one managed policy) and `dead_letter_queue`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        image_directory: str,
        environment: Mapping[str, str],
        statements: Sequence[iam.PolicyStatement],
        placement: FunctionPlacement,
        cpu: int,
        memory_mib: int,
        schedule: events.Schedule,
    ) -> None:
        super().__init__(scope, construct_id)
        if placement.vpc is None or placement.subnets is None or placement.security_group is None:
            raise ValueError("the drift task runs in the VPC: the placement needs subnets and a security group")
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=placement.vpc,
            cluster_name=name,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Definition",
            family=name,
            cpu=cpu,
            memory_limit_mib=memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        logs = encrypted_log_group(
            self,
            "Logs",
            key=placement.logs_key,
            retention_days=placement.log_retention_days,
            removal_policy=placement.removal_policy,
            log_group_name=f"/ecs/{name}",
        )
        self.task_definition.add_container(
            "Job",
            # The Lambda image of the same job; its Lambda entry point is replaced by the task's.
            # x86_64 like the task's runtime platform, whatever machine builds it.
            image=ecs.ContainerImage.from_asset(image_directory, platform=ecr_assets.Platform.LINUX_AMD64),
            entry_point=["python", "-m", "drift_engine.task"],
            environment=dict(environment),
            user=UNPRIVILEGED_USER,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="drift", log_group=logs),
        )
        # The capture, artifacts and reports buckets encrypt with the data key: S3 needs kms:Decrypt to read an
        # SSE-KMS object and kms:GenerateDataKey to write one (S3 User Guide, "Using server-side encryption with
        # AWS KMS keys (SSE-KMS)"). The Lambda runner holds the same pair through PlatformFunction.
        data_key = iam.PolicyStatement(
            actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[placement.data_key.key_arn]
        )
        self.policy = iam.ManagedPolicy(
            self, "Policy", roles=[self.task_definition.task_role], statements=[*statements, data_key]
        )
        self.dead_letter_queue = terminal_dead_letter_queue(
            self, "DeadLetters", key=placement.data_key, removal_policy=placement.removal_policy
        )
        self.rule = events.Rule(
            self,
            "Hourly",
            description=f"Drift check ({name}) of the last window of captured traffic",
            schedule=schedule,
            targets=[
                targets.EcsTask(
                    cluster=self.cluster,
                    task_definition=self.task_definition,
                    subnet_selection=placement.subnets,
                    security_groups=[placement.security_group],
                    retry_attempts=2,
                    max_event_age=Duration.hours(1),
                    dead_letter_queue=self.dead_letter_queue,
                )
            ],
        )
        self._acknowledge(Stack.of(self))

    def _acknowledge(self, stack: Stack) -> None:
        cluster = stack.get_logical_id(cast(CfnElement, self.cluster.node.default_child))
        tasks = f"arn:{stack.partition}:ecs:{stack.region}:*:task/<{cluster}>/*"
        acknowledge(
            self.task_definition,
            (
                "HIPAA.Security-IAMNoInlinePolicy",
                "NIST.800.53.R5-IAMNoInlinePolicy",
                "PCI.DSS.321-IAMNoInlinePolicy",
                "AwsSolutions-IAM5[Resource::*]",
                wildcard_finding(stack, tasks),
            ),
            "The execution role (pull the image asset, write this log group) and the EventBridge role (run this task "
            "definition, pass its two roles, tag its tasks) are generated by CDK from those grants, as inline "
            "policies; '*' only for ecr:GetAuthorizationToken, which has no resource scope, and for the tasks "
            "this cluster starts, whose ids do not exist beforehand. The job's own permissions are in `policy`.",
        )
        acknowledge(
            self.policy,
            ("AwsSolutions-IAM5[Resource::*]",),
            "cloudwatch:PutMetricData has no resource scope; the statement holds it to the drift metrics "
            "namespace by condition.",
        )
        acknowledge(
            self.task_definition,
            ("AwsSolutions-ECS2",),
            "The environment holds configuration only (bucket names, prefixes, thresholds), the same the Lambda "
            "runner gets; the job has no secrets.",
        )

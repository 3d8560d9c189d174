"""CDK Pipelines pieces the library lacks: the configured source, approvals that notify a topic, a Lambda invoke."""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import aws_codecommit as codecommit
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import pipelines
from constructs import Construct

from platform_config.settings import EnvironmentSettings, PipelineSource


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
    partition: str,
    account: str,
) -> tuple[pipelines.CodeBuildStep, list[str]]:
    """After a deploy with engine model_monitor: the SDK baseline job of this build's model version, in the
    environment's own subnets and keys (read from its inference stack), waited for. The pipeline's role must be
    in the environment's account: SageMaker jobs cannot be started across accounts. Returns the step and its
    prefix-scoped resources (for the IAM5 acknowledgement)."""
    prefix, region = environment.resource_prefix(), environment.region

    def arn(service: str, resource: str) -> str:
        return f"arn:{partition}:{service}:{region}:{account}:{resource}"

    endpoint = f"{prefix}-endpoint"
    bucket = f"{prefix}-monitoring-{account}-{region}"
    stack_arn = arn("cloudformation", f"stack/{prefix}-inference/*")
    objects = f"arn:{partition}:s3:::{bucket}/model-monitor/{endpoint}/*"
    keys = arn("kms", "key/*")
    jobs = arn("sagemaker", f"processing-job/{endpoint}-baseline-*")
    step = pipelines.CodeBuildStep(
        step_id,
        input=source,
        commands=[
            "make model",
            f".venv/bin/python -m scripts.model_monitor_baseline --environment {environment.name} "
            f"--stack {prefix}-inference --region {region} --wait",
        ],
        role_policy_statements=[
            iam.PolicyStatement(
                actions=["cloudformation:DescribeStacks"],
                resources=[arn("cloudformation", f"stack/{prefix}-inference/*")],
            ),
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
    )
    return step, [stack_arn, objects, keys, jobs]

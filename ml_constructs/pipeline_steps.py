"""CDK Pipelines pieces the library lacks: the configured source, approvals that notify a topic, a Lambda invoke."""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import aws_codecommit as codecommit
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import pipelines
from constructs import Construct

from platform_config.settings import PipelineSource


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

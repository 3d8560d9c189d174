"""The configured pipeline source becomes the matching CodePipeline source action."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack, pipelines
from aws_cdk.assertions import Template

from ml_constructs.pipeline_steps import pipeline_source
from platform_config import ConfigError
from platform_config.loader import build
from platform_config.settings import PipelineSource

CONNECTION = "arn:aws:codeconnections:eu-west-1:111111111111:connection/00000000-0000-0000-0000-000000000000"


def source_action(source: dict[str, Any]) -> tuple[dict[str, Any], Template]:
    app = App()
    stack = Stack(app, "Source", env={"account": "123456789012", "region": "eu-west-1"})
    settings = build(PipelineSource, source, "ml-platform.pipeline.source")
    synth = pipelines.ShellStep("Synth", input=pipeline_source(stack, settings), commands=["make synth"])
    pipelines.CodePipeline(stack, "Pipeline", synth=synth, self_mutation=False)
    template = Template.from_stack(stack)
    [pipeline] = template.find_resources("AWS::CodePipeline::Pipeline").values()
    [action] = pipeline["Properties"]["Stages"][0]["Actions"]
    return action, template


def test_a_connection_source_triggers_on_push() -> None:
    action, _ = source_action({"repository": "org/repo", "branch": "release", "connection_arn": CONNECTION})
    assert action["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert action["Configuration"]["BranchName"] == "release"
    assert action["Configuration"]["FullRepositoryId"] == "org/repo"


def test_an_s3_source_starts_on_new_object_versions_through_eventbridge() -> None:
    action, template = source_action({"repository": "org/repo", "s3_bucket": "ml-api-source", "s3_key": "main.zip"})
    assert action["ActionTypeId"]["Provider"] == "S3"
    assert action["Configuration"] == {
        "S3Bucket": "ml-api-source",
        "S3ObjectKey": "main.zip",
        "PollForSourceChanges": False,
    }
    [rule] = template.find_resources("AWS::Events::Rule").values()
    assert rule["Properties"]["EventPattern"]["detail"]["requestParameters"]["key"] == ["main.zip"]


def test_a_codecommit_source_follows_its_branch() -> None:
    action, _ = source_action({"repository": "org/repo", "codecommit_repository": "ml-api", "branch": "main"})
    assert action["ActionTypeId"]["Provider"] == "CodeCommit"
    assert action["Configuration"]["RepositoryName"] == "ml-api"


@pytest.mark.parametrize(
    ("source", "key"),
    [
        ({"repository": "org/repo"}, "connection_arn"),
        ({"repository": "org/repo", "connection_arn": CONNECTION, "s3_bucket": "b-b-b"}, "connection_arn"),
        ({"repository": "org/repo", "s3_bucket": "Not_A_Bucket"}, "s3_bucket"),
        ({"repository": "org/repo", "s3_bucket": "ml-api-source", "s3_key": "main.tar"}, "s3_key"),
    ],
)
def test_an_ambiguous_or_bad_source_fails_naming_the_key(source: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as error:
        build(PipelineSource, source, "ml-platform.pipeline.source")
    assert error.value.key == f"ml-platform.pipeline.source.{key}"

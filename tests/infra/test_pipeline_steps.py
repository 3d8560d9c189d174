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


RETRAINING_INPUTS = {
    "endpoint": "mlapi-prod-endpoint", "releases_table_arn": "arn:aws:dynamodb:r:1:table/mlapi-prod-releases",
    "production_artifacts": "prod-art", "capture_bucket": "cap",
    "capture_prefix": "capture/mlapi-prod-endpoint/primary/", "ground_truth_prefix": None, "dataset_uri": None,
    "data_key_alias": "alias/mlapi-prod/data", "data_keys_arn": "arn:aws:kms:r:1:key/*", "upload_bucket": "up",
    "upload_objects_arn": "arn:aws:s3:::up/datasets/*", "upload_key_arn": "arn:aws:kms:r:1:key/up",
    "profile": "prod", "region": "eu-central-1",
}  # fmt: skip


def test_with_the_sagemaker_runner_a_retraining_run_trains_on_productions_runner() -> None:
    """training.runner: sagemaker is no longer refused at synth: the retraining run's build is a SageMaker job with
    the arguments production's inference stack gives (read through production's profile); a push run's lineage
    build keeps training in the build."""
    from ml_constructs.pipeline_steps import RetrainingInputs, retraining_commands
    from platform_config.settings import TrainingSettings

    inputs = RetrainingInputs(**RETRAINING_INPUTS)
    sagemaker = TrainingSettings(runner="sagemaker", max_runtime_seconds=1800, max_wait_seconds=2400)
    [build], _ = retraining_commands(inputs, sagemaker)
    run, _, lineage = build.partition("scripts.retrain lineage")
    assert "--runner sagemaker --training-stack mlapi-prod-inference" in run
    assert "--environment-profile prod --environment-region eu-central-1" in run
    assert "--runner" not in lineage
    [default], _ = retraining_commands(inputs, TrainingSettings())
    assert "--runner" not in default and "--training-stack" not in default


def role_statements(statements: list[Any]) -> list[dict[str, Any]]:
    from aws_cdk import aws_iam as iam

    stack = Stack(App(), "Reads", env={"account": "123456789012", "region": "eu-west-1"})
    role = iam.Role(stack, "Synth", assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"))
    for statement in statements:
        role.add_to_policy(statement)
    [policy] = Template.from_stack(stack).find_resources("AWS::IAM::Policy").values()
    return list(policy["Properties"]["PolicyDocument"]["Statement"])


def test_an_s3_package_is_read_and_listed_only_under_its_prefix() -> None:
    """GetObject: "If you don't have the s3:ListBucket permission, Amazon S3 returns an HTTP status code 403 Access
    Denied error" for an absent object (Amazon S3 API Reference, GetObject, Permissions,
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html): the optional baseline_predictions.csv
    needs the listing to read as absent."""
    from ml_constructs.pipeline_steps import package_read

    statements, objects = package_read("s3://model-packages/team/churn/", "aws")
    assert objects == "arn:aws:s3:::model-packages/team/churn/*"
    assert role_statements(statements) == [
        {"Action": "s3:GetObject", "Effect": "Allow", "Resource": "arn:aws:s3:::model-packages/team/churn/*"},
        {
            "Action": "s3:ListBucket",
            "Condition": {"StringLike": {"s3:prefix": ["team/churn/", "team/churn/*"]}},
            "Effect": "Allow",
            "Resource": "arn:aws:s3:::model-packages",
        },
    ]


def test_an_s3_training_csv_is_read_as_that_one_object() -> None:
    from ml_constructs.pipeline_steps import data_read

    assert role_statements([data_read("s3://datasets/churn/train.csv", "aws")]) == [
        {"Action": "s3:GetObject", "Effect": "Allow", "Resource": "arn:aws:s3:::datasets/churn/train.csv"}
    ]
    with pytest.raises(ValueError, match=r"model\.source\.data: 's3://datasets/churn/' names no object"):
        data_read("s3://datasets/churn/", "aws")


def test_the_synth_step_gets_the_read_of_the_configured_s3_model_source() -> None:
    from types import SimpleNamespace

    from ml_constructs.pipeline_steps import model_data_uri, model_package_uri

    def environment(**source: str) -> Any:
        return SimpleNamespace(
            model=SimpleNamespace(source=SimpleNamespace(**{"package": None, "data": None, **source}))
        )

    assert model_data_uri(environment(data="s3://datasets/train.csv")) == "s3://datasets/train.csv"
    assert model_data_uri(environment(data="model_container.models.wine.train:load")) is None
    assert model_data_uri(environment(data="data/train.csv")) is None
    assert model_package_uri(environment(package="s3://model-packages/p/")) == "s3://model-packages/p/"


def test_the_synth_log_names_the_configured_model_source() -> None:
    from types import SimpleNamespace

    from ml_constructs.pipeline_steps import model_source_description

    def environment(**source: str | None) -> Any:
        return SimpleNamespace(
            model=SimpleNamespace(source=SimpleNamespace(**{"package": None, "data": None, **source}))
        )

    assert model_source_description(environment(package="s3://b/p/")) == "model.source.package s3://b/p/"
    trained = environment(train="m.train:train", data="s3://b/train.csv")
    assert model_source_description(trained) == "model.source train m.train:train on data s3://b/train.csv"
    assert model_source_description(None) == "model.source (cdk.json)"

"""The Model Monitor engine: schedule and job definition once a version is baselined, a synth warning before."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Annotations, Match, Template

from ml_constructs.model_monitor import ModelMonitorSchedule, analyzer_image
from ml_constructs.platform_function import FunctionPlacement
from model_container.card import BINARY, MULTICLASS, REGRESSION, ModelCard
from platform_config.loader import build
from platform_config.settings import MonitoringSettings
from tests.infra.conftest import Variant

ROOT = Path(__file__).resolve().parents[2]
CARD = ModelCard.load(ROOT / "model_container" / "dist")  # the default model the variants synthesize
VERSION = CARD.version
FEATURES = CARD.feature_names


@pytest.fixture(scope="module")
def inference(variant: Variant) -> Template:
    return variant.dev_inference


def test_a_baselined_version_gets_an_hourly_isolated_encrypted_data_quality_schedule(inference: Template) -> None:
    [definition] = inference.find_resources("AWS::SageMaker::DataQualityJobDefinition").values()
    props = definition["Properties"]
    monitor = "s3://mlapi-dev-monitoring-123456789012-eu-west-1/model-monitor/mlapi-dev-endpoint"
    assert props["DataQualityAppSpecification"]["ImageUri"] == (
        "468650794304.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-model-monitor-analyzer"
    )
    assert props["DataQualityAppSpecification"]["RecordPreprocessorSourceUri"] == (
        f"{monitor}/{VERSION}/record_preprocessor.py"
    )
    baseline = props["DataQualityBaselineConfig"]
    assert baseline["ConstraintsResource"]["S3Uri"] == f"{monitor}/{VERSION}/baseline/constraints.json"
    assert baseline["StatisticsResource"]["S3Uri"] == f"{monitor}/{VERSION}/baseline/statistics.json"
    assert props["DataQualityJobInput"]["EndpointInput"]["EndpointName"] == "mlapi-dev-endpoint"
    network = props["NetworkConfig"]
    assert network["EnableNetworkIsolation"] is True and network["EnableInterContainerTrafficEncryption"] is True
    assert len(network["VpcConfig"]["Subnets"]) == 2 and network["VpcConfig"]["SecurityGroupIds"]
    key = props["JobResources"]["ClusterConfig"]["VolumeKmsKeyId"]
    assert key == props["DataQualityJobOutputConfig"]["KmsKeyId"] and key
    # Every property of a job definition is create-only: its name carries their digest (test_replacement_safety).
    assert re.fullmatch(
        rf"mlapi-dev-data-quality-{VERSION.replace('.', '-')}-[0-9a-f]{{8}}", props["JobDefinitionName"]
    )
    inference.has_resource_properties(
        "AWS::SageMaker::MonitoringSchedule",
        {
            "EndpointName": "mlapi-dev-endpoint",
            "MonitoringScheduleConfig": {
                "MonitoringType": "DataQuality",
                "MonitoringJobDefinitionName": props["JobDefinitionName"],
                "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"},
            },
        },
    )
    # The built-in engine is not deployed beside it.
    assert not [n for n in inference.find_resources("AWS::Lambda::Function") if "DriftJob" in n]


def test_labelled_traffic_gets_an_hourly_model_quality_job_and_an_accuracy_alarm(inference: Template) -> None:
    """The job's problem type and prediction attributes are the card's task's; classifiers alarm on accuracy, a
    regressor on RMSE (the metrics Model Monitor publishes per problem type)."""
    [definition] = inference.find_resources("AWS::SageMaker::ModelQualityJobDefinition").values()
    props = definition["Properties"]
    spec = props["ModelQualityAppSpecification"]
    problem, prediction, probability = {
        BINARY: ("BinaryClassification", "label", "probability"),
        MULTICLASS: ("MulticlassClassification", "label", None),
        REGRESSION: ("Regression", "value", None),
    }[CARD.task]
    assert spec["ProblemType"] == problem
    assert spec["Environment"]["RECORD_MODE"] == "model_quality"
    assert spec["RecordPreprocessorSourceUri"].endswith(f"/{VERSION}/record_preprocessor.py")
    endpoint = props["ModelQualityJobInput"]["EndpointInput"]
    assert (endpoint["InferenceAttribute"], endpoint.get("ProbabilityAttribute")) == (prediction, probability)
    assert (endpoint["StartTimeOffset"], endpoint["EndTimeOffset"]) == ("-PT2H", "-PT1H")
    capture_bucket = "mlapi-dev-capture-123456789012-eu-west-1"
    assert props["ModelQualityJobInput"]["GroundTruthS3Input"]["S3Uri"] == f"s3://{capture_bucket}/ground-truth/"
    assert props["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert props["JobResources"]["ClusterConfig"]["VolumeKmsKeyId"]
    inference.has_resource_properties(
        "AWS::SageMaker::MonitoringSchedule",
        {
            "MonitoringScheduleConfig": {
                "MonitoringType": "ModelQuality",
                "MonitoringJobDefinitionName": props["JobDefinitionName"],
            }
        },
    )
    regressor = CARD.task == REGRESSION
    metric, comparison = ("rmse", "GreaterThanThreshold") if regressor else ("accuracy", "LessThanThreshold")
    inference.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"AlarmName": f"mlapi-dev-model-{metric}", "Namespace": "aws/sagemaker/Endpoints/model-metrics",
         "MetricName": metric, "ComparisonOperator": comparison},
    )  # fmt: skip


def test_violations_and_failed_runs_go_to_the_alarm_topic(inference: Template) -> None:
    schedule_ids = sorted(inference.find_resources("AWS::SageMaker::MonitoringSchedule"))
    [rule] = inference.find_resources(
        "AWS::Events::Rule",
        {
            "Properties": {
                "EventPattern": {"source": ["aws.sagemaker"], "detail": {"MonitoringScheduleArn": Match.any_value()}}
            }
        },
    ).values()
    detail = rule["Properties"]["EventPattern"]["detail"]
    assert sorted(a["Fn::GetAtt"][0] for a in detail["MonitoringScheduleArn"]) == schedule_ids
    assert {"ExitMessage": [{"prefix": "CompletedWithViolations"}]} in detail["$or"]
    assert {"ProcessingJobStatus": ["Failed"]} in detail["$or"]
    [target] = rule["Properties"]["Targets"]
    assert "Ref" in target["Arn"]


def test_each_feature_has_a_drift_alarm_named_as_in_the_builtin_engine(inference: Template) -> None:
    alarms = inference.find_resources(
        "AWS::CloudWatch::Alarm", {"Properties": {"Namespace": "aws/sagemaker/Endpoints/data-metrics"}}
    )
    by_name = {a["Properties"]["AlarmName"]: a["Properties"] for a in alarms.values()}
    assert set(by_name) == {f"mlapi-dev-drift-{feature}" for feature in FEATURES}
    first = by_name[f"mlapi-dev-drift-{FEATURES[0]}"]
    assert first["MetricName"] == "feature_baseline_drift__c0"
    assert first["AlarmActions"] and first["Threshold"] == 0.1


def test_the_role_reads_capture_and_baseline_and_writes_only_under_model_monitor(inference: Template) -> None:
    [role_id] = inference.find_resources("AWS::IAM::Role", {"Properties": {"RoleName": "mlapi-dev-model-monitor"}})
    policies = inference.find_resources(
        "AWS::IAM::ManagedPolicy", {"Properties": {"Roles": Match.array_with([{"Ref": role_id}])}}
    )
    inference.resource_properties_count_is("AWS::IAM::Policy", {"Roles": Match.array_with([{"Ref": role_id}])}, 0)
    statements = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    reads = json.dumps([s["Resource"] for s in statements if s["Action"] == "s3:GetObject"])
    assert "/ground-truth/*" in reads and "/capture/mlapi-dev-endpoint/*" in reads
    puts = [s for s in statements if s["Action"] == "s3:PutObject"]
    assert puts and all("model-monitor/mlapi-dev-endpoint/*" in json.dumps(s["Resource"]) for s in puts)
    for statement in statements:
        if statement["Resource"] == "*":
            assert set(_actions(statement)) <= {
                "cloudwatch:PutMetricData", "ecr:GetAuthorizationToken", "ec2:CreateNetworkInterface",
                "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
                "ec2:DeleteNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs",
                "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups",
            }  # fmt: skip


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def monitor_stack(monitoring: dict[str, Any], version: str, **card_props: Any) -> Stack:
    """One ModelMonitorSchedule in a stack of its own, with a VPC placement (the test environment qa); the default
    card's features unless `feature_names` is given."""
    card_props.setdefault("feature_names", FEATURES)
    app = App()
    stack = Stack(app, "Monitor", env={"account": "123456789012", "region": "us-east-1"})
    vpc = ec2.Vpc(
        stack,
        "Vpc",
        subnet_configuration=[ec2.SubnetConfiguration(name="inference", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)],
    )
    key = kms.Key(stack, "Key")
    placement = FunctionPlacement(
        vpc=vpc,
        subnets=ec2.SubnetSelection(subnet_group_name="inference"),
        security_group=ec2.SecurityGroup(stack, "Sg", vpc=vpc),
        data_key=key,
        logs_key=key,
        log_retention_days=30,
        removal_policy=RemovalPolicy.DESTROY,
    )
    ModelMonitorSchedule(
        stack,
        "ModelMonitor",
        prefix="mlapi-qa",
        environment_name="qa",
        settings=build(MonitoringSettings, monitoring, "ml-platform.environments.qa.monitoring"),
        endpoint_name="mlapi-qa-endpoint",
        model_version=version,
        capture_bucket_name="capture",
        capture_prefix="capture",
        monitoring_bucket_name="monitoring",
        topic=sns.Topic(stack, "Topic"),
        placement=placement,
        **card_props,
    )
    return stack


def test_without_a_baseline_nothing_is_scheduled_and_synth_says_what_to_run() -> None:
    stack = monitor_stack({"engine": "model_monitor"}, "2.0.0")
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::SageMaker::MonitoringSchedule", 0)
    template.resource_count_is("AWS::SageMaker::DataQualityJobDefinition", 0)
    [warning] = Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp("No Model Monitor baseline"))
    text = warning.entry.data
    assert "python -m scripts.model_monitor_baseline --environment qa" in text
    assert 'add "2.0.0" to ml-platform.environments.qa.monitoring.model_monitor.baselined_versions' in text


def test_the_analyzer_image_comes_from_the_table_and_unknown_regions_are_refused() -> None:
    assert analyzer_image("us-east-1") == (
        "156813124566.dkr.ecr.us-east-1.amazonaws.com/sagemaker-model-monitor-analyzer"
    )
    assert analyzer_image("cn-north-1").startswith("453000072557.dkr.ecr.cn-north-1.amazonaws.com.cn/")
    with pytest.raises(ValueError, match="no analyzer image in xx-east-9"):
        analyzer_image("xx-east-9")


def test_the_image_table_matches_the_one_the_sagemaker_sdk_ships() -> None:
    import sagemaker.core

    shipped = Path(sagemaker.core.__file__).parent / "image_uri_config" / "model-monitor.json"
    registries = json.loads(shipped.read_text())["versions"][""]["registries"]
    assert json.loads((ROOT / "ml_constructs" / "model_monitor_images.json").read_text()) == registries


def test_the_pipeline_runs_the_sdk_baseline_after_deploying_a_model_monitor_environment(variant: Variant) -> None:
    resources = variant.pipeline["Resources"]
    [stage] = [
        s for p in resources.values() if p["Type"] == "AWS::CodePipeline::Pipeline"
        for s in p["Properties"]["Stages"] if s["Name"] == "staging"
    ]  # fmt: skip
    actions = {a["Name"]: a for a in stage["Actions"]}
    deploys = [a["RunOrder"] for n, a in actions.items() if n.endswith(".Deploy")]
    assert actions["ModelMonitorBaseline"]["RunOrder"] > max(deploys)
    project = resources[actions["ModelMonitorBaseline"]["Configuration"]["ProjectName"]["Ref"]]
    assert (
        "-m scripts.model_monitor_baseline --environment staging --stack mlapi-staging-inference "
        "--region eu-west-1 --wait"
    ) in project["Properties"]["Source"]["BuildSpec"]
    production = [s for p in resources.values() if p["Type"] == "AWS::CodePipeline::Pipeline"
                  for s in p["Properties"]["Stages"] if s["Name"] == "prod"]  # fmt: skip
    assert "ModelMonitorBaseline" not in {a["Name"] for a in production[0]["Actions"]}  # prod stays builtin


def test_the_baseline_step_may_pass_only_the_model_monitor_role_to_sagemaker() -> None:
    from aws_cdk import Stack as CdkStack
    from aws_cdk import pipelines

    from ml_constructs.pipeline_steps import model_monitor_baseline_step
    from ml_constructs.step_access import EnvironmentAccess, StepRoles
    from platform_config import load_environments

    context = json.loads((ROOT / "cdk.json").read_text())["context"]["ml-platform"]
    [staging] = load_environments(context, selected="staging", default_account="123456789012")
    app = App()
    source = pipelines.CodePipelineSource.connection(
        "org/repo", "main", connection_arn="arn:aws:codeconnections:eu-west-1:111111111111:connection/x"
    )
    scope = CdkStack(app, "Scope")  # the step's named role needs a scope
    access = EnvironmentAccess(
        name="staging", prefix="mlapi-staging", account="123456789012", region="eu-west-1", partition="aws",
        pipeline_account="123456789012",
    )  # fmt: skip
    model_monitor_baseline_step(
        "ModelMonitorBaseline", source=source, environment=staging, access=access, roles=StepRoles(scope, "Roles"),
        pipeline_prefix="mlapi-pipeline", cdk_out=source,
    )  # fmt: skip
    # What the step may do in staging: its role there (ml_constructs/step_access.py), not the pipeline-side role.
    [grant] = access.grants
    wildcards = grant.wildcards
    statements = {
        tuple(s.to_json()["Action"]) if isinstance(s.to_json()["Action"], list) else s.to_json()["Action"]: s.to_json()
        for s in grant.statements
    }
    pass_role = statements["iam:PassRole"]
    assert pass_role["Resource"] == "arn:aws:iam::123456789012:role/mlapi-staging-model-monitor"
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    jobs = statements[("sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:AddTags")]
    assert (
        jobs["Resource"] == "arn:aws:sagemaker:eu-west-1:123456789012:processing-job/mlapi-staging-endpoint-baseline-*"
    )
    assert jobs["Resource"] in wildcards and len(wildcards) == 4


# Model Monitor's problem type and the record preprocessor's attributes per task (SageMaker API reference,
# ModelQualityAppSpecification.ProblemType and EndpointInput).
QUALITY = {
    "binary_classification": ("BinaryClassification", "label", "probability"),
    "multiclass_classification": ("MulticlassClassification", "label", None),
    "regression": ("Regression", "value", None),
}
PUBLISHED = {"accuracy", "precision", "recall", "roc_auc", "rmse", "mae", "r2"}  # Model Monitor's, by our names


def test_every_task_gets_its_problem_type_its_cards_quality_alarms_and_its_features_drift_alarms(
    model_package: Path,
) -> None:
    card = ModelCard.load(model_package)
    monitoring = {
        "engine": "model_monitor",
        "ground_truth_prefix": "ground-truth",
        "min_accuracy": 0.8,
        "model_monitor": {"baselined_versions": [card.version], "model_quality": True},
    }
    stack = monitor_stack(
        monitoring, card.version, task=card.task, acceptance=card.acceptance, feature_names=card.feature_names
    )
    template = Template.from_stack(stack)
    [definition] = template.find_resources("AWS::SageMaker::ModelQualityJobDefinition").values()
    problem, inference, probability = QUALITY[card.task]
    assert definition["Properties"]["ModelQualityAppSpecification"]["ProblemType"] == problem
    endpoint = definition["Properties"]["ModelQualityJobInput"]["EndpointInput"]
    assert endpoint["InferenceAttribute"] == inference and endpoint.get("ProbabilityAttribute") == probability
    assert ("ProbabilityThresholdAttribute" in endpoint) is (probability is not None)
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in template.find_resources(
            "AWS::CloudWatch::Alarm", {"Properties": {"Namespace": "aws/sagemaker/Endpoints/model-metrics"}}
        ).values()
    }
    bounds = {name: bound for name, bound in card.acceptance.items() if name in PUBLISHED}
    defaults = {"r2": {"min": 0.0}} if card.task == "regression" else {"accuracy": {"min": 0.8}}
    expected = {**defaults, **bounds}
    assert set(alarms) == {f"mlapi-qa-model-{name.replace('_', '-')}" for name in expected}
    for name, bound in expected.items():
        alarm = alarms[f"mlapi-qa-model-{name.replace('_', '-')}"]
        ((side, limit),) = bound.items()
        assert alarm["MetricName"] == {"roc_auc": "auc"}.get(name, name) and alarm["Threshold"] == limit
        assert alarm["ComparisonOperator"] == ("LessThanThreshold" if side == "min" else "GreaterThanThreshold")
    unwatched = sorted(set(card.acceptance) - PUBLISHED)
    warnings = Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp("Model Monitor computes no"))
    assert bool(warnings) is bool(unwatched)
    drift = template.find_resources(
        "AWS::CloudWatch::Alarm", {"Properties": {"Namespace": "aws/sagemaker/Endpoints/data-metrics"}}
    )
    assert {a["Properties"]["AlarmName"] for a in drift.values()} == {f"mlapi-qa-drift-{f}" for f in card.feature_names}


def test_each_feature_adds_one_alarm_and_a_card_past_the_cap_is_refused_naming_the_field() -> None:
    """One drift alarm a feature counts against CloudFormation's 500 resources per template (CloudFormation quotas,
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html)."""
    from ml_constructs.drift_monitor import MAX_ALARMED_FEATURES
    from model_container.card import CardError

    monitoring = {"engine": "model_monitor", "model_monitor": {"baselined_versions": [VERSION]}}

    def resources(width: int) -> int:
        stack = monitor_stack(monitoring, VERSION, feature_names=[f"feature_{i}" for i in range(width)])
        return len(Template.from_stack(stack).to_json()["Resources"])

    assert resources(20) - resources(10) == 10
    with pytest.raises(CardError, match=rf"'feature_schema\.features': {MAX_ALARMED_FEATURES + 1} features.*500"):
        monitor_stack(monitoring, VERSION, feature_names=[f"feature_{i}" for i in range(MAX_ALARMED_FEATURES + 1)])


@pytest.mark.parametrize("positive_label", [0, 1])
def test_a_positive_label_0_card_alarms_only_on_what_model_monitor_computes_for_its_class(positive_label: int) -> None:
    """Model Monitor's binary precision and recall are of class 1 ("Model quality metrics",
    https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-model-quality-metrics.html; EndpointInput has no
    positive-class field, https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_EndpointInput.html): with
    positive_label 0 the job gets P(label = 1) (POSITIVE_LABEL) and alarms on accuracy and AUC only."""
    acceptance = {"accuracy": {"min": 0.9}, "precision": {"min": 0.9}, "recall": {"min": 0.9}, "roc_auc": {"min": 0.95}}
    monitoring = {
        "engine": "model_monitor",
        "ground_truth_prefix": "ground-truth",
        "model_monitor": {"baselined_versions": [VERSION], "model_quality": True},
    }
    stack = monitor_stack(
        monitoring,
        VERSION,
        task="binary_classification",
        acceptance=acceptance,
        feature_names=FEATURES,
        positive_label=positive_label,
    )
    template = Template.from_stack(stack)
    [definition] = template.find_resources("AWS::SageMaker::ModelQualityJobDefinition").values()
    environment = definition["Properties"]["ModelQualityAppSpecification"]["Environment"]
    assert environment.get("POSITIVE_LABEL", "1") == str(positive_label)
    watched = {
        a["Properties"]["MetricName"]
        for a in template.find_resources(
            "AWS::CloudWatch::Alarm", {"Properties": {"Namespace": "aws/sagemaker/Endpoints/model-metrics"}}
        ).values()
    }
    warnings = Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp("of class 1 only"))
    if positive_label == 1:
        assert watched == {"accuracy", "precision", "recall", "auc"} and not warnings
    else:
        assert watched == {"accuracy", "auc"}
        assert warnings and "precision, recall" in str(warnings[0].entry.data)


def test_the_features_are_the_cards_never_a_contract_file() -> None:
    """No fallback to model_container/contract/feature_schema.json (another model's after a source change)."""
    import inspect

    from ml_constructs.drift_monitor import DriftMonitor

    for construct in (ModelMonitorSchedule, DriftMonitor):
        parameter = inspect.signature(construct.__init__).parameters["feature_names"]
        assert parameter.default is inspect.Parameter.empty, construct.__name__
    for module in ("ml_constructs/model_monitor.py", "ml_constructs/drift_monitor.py"):
        assert 'feature_schema.json")' not in (ROOT / module).read_text()

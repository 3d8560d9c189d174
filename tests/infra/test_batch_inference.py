"""Batch inference (ml_constructs/batch_inference.py): a state machine that runs one SageMaker Batch Transform job of
the endpoint's model per execution, with the data key, the model's VPC and network isolation, a least-privilege
role, logs, tracing, a failure alarm and an optional schedule.

Most checks run on a small stack (one construct, every nag pack attached, schedule and tuning set); the last ones
read dev from the session synth, where cdk.json enables batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from ml_constructs.alarm_topic import alarm_topic
from ml_constructs.batch_inference import BatchInference
from ml_constructs.encrypted_logs import LogPolicy
from ml_constructs.model_endpoint import ModelEndpoint, ModelRelease
from ml_constructs.nag import add_rule_packs
from platform_config import ConfigError, EndpointSettings, ModelSource
from platform_config.loader import build
from platform_config.settings import BatchSettings
from tests.infra.cfn_resolve import Resolver
from tests.infra.small_stacks import imported_vpc

PREFIX, BUCKET = "mlapi-test", "mlapi-test-artifacts"
SETTINGS = BatchSettings(
    enabled=True,
    instance_type="ml.c5.xlarge",
    instance_count=2,
    content_type="application/jsonlines",
    max_payload_mb=2,
    max_concurrent_transforms=3,
    schedule="cron(0 3 * * ? *)",
)
# Actions AWS gives no resource type (Service Authorization Reference): Step Functions' log delivery and X-Ray.
UNSCOPABLE = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}


class Small:
    """The synthesized small stack, its intrinsics resolved (cfn_resolve: account 123456789012, eu-west-1)."""

    def __init__(self, template: dict[str, Any], report: dict[str, Any]) -> None:
        self.template, self.report = template, report
        resolver = Resolver(template)
        self.resources = {lid: resolver.resolve(r) for lid, r in template["Resources"].items()}
        [machine] = self.of_type("AWS::StepFunctions::StateMachine")
        self.machine = machine["Properties"]
        self.definition: dict[str, Any] = json.loads(self.machine["DefinitionString"])
        [model] = self.of_type("AWS::SageMaker::Model")
        self.model_name: str = model["Properties"]["ModelName"]
        [key] = [lid for lid, r in template["Resources"].items() if lid.startswith("DataKey")]
        self.data_key_arn: str = resolver.get_att(key, "Arn")
        self.topic_arn: str = resolver.ref(next(lid for lid in template["Resources"] if lid.startswith("Topic")))

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return [r for r in self.resources.values() if r["Type"] == resource_type]

    def statements(self, role_prefix: str) -> list[dict[str, Any]]:
        """Every statement of every policy attached to the role whose logical id starts with `role_prefix`."""
        role_arns = {
            f"arn:aws:iam::123456789012:role/{r['Properties'].get('RoleName', lid)}"
            for lid, r in self.resources.items()
            if r["Type"] == "AWS::IAM::Role" and lid.startswith(role_prefix)
        }
        found = []
        for lid, resource in self.resources.items():
            if resource["Type"] not in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
                continue
            roles = self.template["Resources"][lid]["Properties"].get("Roles", [])
            if any(r.get("Ref", "").startswith(role_prefix) for r in roles):
                found += resource["Properties"]["PolicyDocument"]["Statement"]
        assert role_arns and found
        return found


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Small:
    outdir = tmp_path_factory.mktemp("batch-small")
    app = App(outdir=str(outdir))
    add_rule_packs(app)  # synth raises on any unacknowledged finding of the five packs
    stack = Stack(app, "Batch", env={"account": "123456789012", "region": "eu-west-1"})
    vpc = imported_vpc(stack)
    data_key = kms.Key(stack, "DataKey", enable_key_rotation=True)
    logs_key = kms.Key(stack, "LogsKey", enable_key_rotation=True)
    logs = LogPolicy(logs_key, 30, RemovalPolicy.DESTROY)
    source = ModelSource()
    endpoint = ModelEndpoint(
        stack,
        "Model",
        endpoint_name=f"{PREFIX}-endpoint",
        settings=EndpointSettings(initial_instance_count=1, min_capacity=1, max_capacity=2),
        source=source,
        release=ModelRelease.from_metadata_dir(source.artifact_dir),
        vpc=vpc,
        subnets=ec2.SubnetSelection(subnet_group_name="inference"),
        security_group=ec2.SecurityGroup(stack, "Sg", vpc=vpc),
        data_key=data_key,
        capture_bucket=s3.Bucket.from_bucket_name(stack, "Capture", "capture-bucket"),
        capture_bucket_name="capture-bucket",
        logs=logs,
    )
    topic = alarm_topic(stack, "Topic", prefix=PREFIX, key=logs_key, emails=())
    BatchInference(
        stack,
        "Batch",
        prefix=PREFIX,
        settings=SETTINGS,
        model_endpoint=endpoint,
        bucket_name=BUCKET,
        data_key=data_key,
        topic=topic,
        topic_key=logs_key,
        logs=logs,
    )
    assembly = app.synth()
    report = json.loads((Path(outdir) / "validation-report.json").read_text())
    return Small(assembly.get_stack_by_name("Batch").template, report)


def state(small: Small, name: str) -> dict[str, Any]:
    states: dict[str, Any] = small.definition["States"]
    return states[name]


def test_no_nag_finding_is_left(small: Small) -> None:
    findings = [
        v["ruleName"]
        for plugin in small.report["pluginReports"]
        for v in plugin["violations"]
        if not v["ruleName"].startswith("CloudFormation-Validate")
    ]
    assert findings == []


def test_the_transform_job_runs_the_endpoints_model_on_lines_with_the_data_key(small: Small) -> None:
    transform = state(small, "Transform")
    # Step Functions Developer Guide, "Create and manage Amazon SageMaker AI jobs with Step Functions".
    assert transform["Resource"] == "arn:aws:states:::sagemaker:createTransformJob.sync"
    request = transform["Parameters"]
    assert request["ModelName"] == small.model_name  # the endpoint's model: its image, VPC config, isolation
    assert request["TransformJobName.$"] == "$.job_name"
    assert (request["BatchStrategy"], request["MaxPayloadInMB"], request["MaxConcurrentTransforms"]) == (
        "MultiRecord",
        2,
        3,
    )
    assert request["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": "$.input"}},
        "ContentType": "application/jsonlines",
        "SplitType": "Line",
        "CompressionType": "None",
    }
    assert request["TransformOutput"] == {
        "S3OutputPath.$": "$.output",
        "Accept": "application/jsonlines",
        "AssembleWith": "Line",
        "KmsKeyId": small.data_key_arn,
    }
    assert request["TransformResources"] == {
        "InstanceType": "ml.c5.xlarge",
        "InstanceCount": 2,
        "VolumeKmsKeyId": small.data_key_arn,
    }
    [model] = small.of_type("AWS::SageMaker::Model")
    assert model["Properties"]["EnableNetworkIsolation"] is True and model["Properties"]["VpcConfig"]["Subnets"]


def test_job_names_and_output_paths_are_per_execution_and_input_must_be_under_the_prefix(small: Small) -> None:
    prepare = state(small, "Prepare")["Parameters"]
    assert prepare["job_name.$"] == f"States.Format('{PREFIX}-batch-{{}}', States.UUID())"
    assert prepare["output.$"] == f"States.Format('s3://{BUCKET}/batch/output/{{}}/', $$.Execution.Name)"
    assert state(small, "WholeInputPrefix")["Result"] == {"input": f"s3://{BUCKET}/batch/input/"}
    [allowed] = state(small, "CheckInput")["Choices"]
    assert allowed == {"Variable": "$.input", "StringMatches": f"s3://{BUCKET}/batch/input/*", "Next": "Prepare"}
    assert state(small, state(small, "CheckInput")["Default"])["Type"] == "Fail"
    assert len(f"{PREFIX}-batch-") + 36 <= 63  # CreateTransformJob: TransformJobName, 1-63 characters


def test_outcomes_are_reported_to_the_topic_and_failures_fail_the_execution(small: Small) -> None:
    [catch] = state(small, "Transform")["Catch"]
    assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "ReportFailure"}
    for name, outcome in (("ReportSuccess", "completed"), ("ReportFailure", "FAILED")):
        report = state(small, name)
        assert report["Resource"] == "arn:aws:states:::sns:publish"
        assert report["Parameters"]["TopicArn"] == small.topic_arn and outcome in report["Parameters"]["Subject"]
        assert report["Parameters"]["Message.$"] == "States.JsonToString($)"
    assert state(small, "ReportSuccess")["Next"] == "Done"
    failed = state(small, state(small, "ReportFailure")["Next"])
    assert failed == {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"}
    assert small.definition["TimeoutSeconds"] == SETTINGS.timeout_minutes * 60


def test_failed_or_timed_out_executions_raise_an_alarm_on_the_topic(small: Small) -> None:
    [alarm] = [a["Properties"] for a in small.of_type("AWS::CloudWatch::Alarm")]
    assert alarm["AlarmName"] == f"{PREFIX}-batch-failed" and alarm["AlarmActions"] == [small.topic_arn]
    metrics = {m["MetricStat"]["Metric"]["MetricName"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert set(metrics) == {"ExecutionsFailed", "ExecutionsTimedOut"}
    for stat in metrics.values():
        assert stat["Metric"]["Namespace"] == "AWS/States" and stat["Stat"] == "Sum"
        assert stat["Metric"]["Dimensions"] == [
            {"Name": "StateMachineArn", "Value": f"arn:aws:states:eu-west-1:123456789012:stateMachine:{PREFIX}-batch"}
        ]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")


def test_the_state_machine_logs_everything_encrypted_and_is_traced(small: Small) -> None:
    assert small.machine["StateMachineName"] == f"{PREFIX}-batch"
    logging = small.machine["LoggingConfiguration"]
    assert (logging["Level"], logging["IncludeExecutionData"]) == ("ALL", True)
    [group] = [
        g["Properties"] for g in small.of_type("AWS::Logs::LogGroup") if "states" in g["Properties"]["LogGroupName"]
    ]
    assert group["LogGroupName"] == f"/aws/vendedlogs/states/{PREFIX}-batch" and group["KmsKeyId"]
    assert small.machine["TracingConfiguration"] == {"Enabled": True}


def test_the_state_machine_role_may_only_run_this_models_jobs(small: Small) -> None:
    [trust] = [
        r["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        for lid, r in small.resources.items()
        if lid.startswith("BatchRole") and r["Type"] == "AWS::IAM::Role"
    ]
    assert trust == [
        {
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
            "Effect": "Allow",
            "Principal": {"Service": "states.amazonaws.com"},
        }
    ]
    statements = small.statements("BatchRole")
    actions = {a for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert "iam:PassRole" not in actions  # CreateTransformJob passes no role; the model has its own
    jobs = f"arn:aws:sagemaker:eu-west-1:123456789012:transform-job/{PREFIX}-batch-*"
    [create] = [s for s in statements if s["Action"] == "sagemaker:CreateTransformJob"]
    assert create["Resource"] == jobs
    assert create["Condition"] == {
        "ArnEquals": {
            "sagemaker:ModelArn": f"arn:aws:sagemaker:eu-west-1:123456789012:model/{small.model_name}",
            "sagemaker:VolumeKmsKey": small.data_key_arn,
            "sagemaker:OutputKmsKey": small.data_key_arn,
        },
        "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": ["ml.c5.xlarge"]},
    }
    for statement in statements:
        listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if any(a.startswith("sagemaker:") for a in listed):
            assert statement["Resource"] == jobs
        if any(a.startswith("events:") for a in listed):
            # The rule the .sync integration manages (Step Functions Developer Guide, SageMaker IAM policies).
            assert statement["Resource"] == (
                "arn:aws:events:eu-west-1:123456789012:rule/StepFunctionsGetEventsForSageMakerTransformJobsRule"
            )
        if statement["Resource"] == "*":
            assert set(listed) <= UNSCOPABLE, statement
        if "sns:Publish" in listed:
            assert statement["Resource"] == small.topic_arn
    # Nothing inline: every permission is in the construct's managed policy (IAMNoInlinePolicy).
    assert not [lid for lid, r in small.resources.items() if r["Type"] == "AWS::IAM::Policy" and "Batch" in lid]


def test_the_models_role_reads_only_the_input_prefix_and_writes_only_the_output_prefix(small: Small) -> None:
    statements = small.statements("ModelExecutionRole")
    by_action: dict[str, list[Any]] = {}
    for statement in statements:
        for action in statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]:
            by_action.setdefault(action, []).append(statement)
    bucket = f"arn:aws:s3:::{BUCKET}"
    assert [s["Resource"] for s in by_action["s3:PutObject"] if BUCKET in s["Resource"]] == [f"{bucket}/batch/output/*"]
    assert [s["Resource"] for s in by_action["s3:GetObject"] if BUCKET in s["Resource"]] == [f"{bucket}/batch/input/*"]
    [listing] = by_action["s3:ListBucket"]
    assert listing["Resource"] == bucket and listing["Condition"] == {"StringLike": {"s3:prefix": ["batch/input/*"]}}
    [streams] = [s for s in by_action["logs:PutLogEvents"] if "TransformJobs" in s["Resource"]]
    assert streams["Resource"].endswith(f":log-group:/aws/sagemaker/TransformJobs:log-stream:{PREFIX}-batch-*")


def test_the_schedule_starts_this_state_machine_over_the_whole_input_prefix(small: Small) -> None:
    [schedule] = [s["Properties"] for s in small.of_type("AWS::Scheduler::Schedule")]
    assert schedule["ScheduleExpression"] == "cron(0 3 * * ? *)" and schedule["State"] == "ENABLED"
    target = schedule["Target"]
    assert target["Arn"] == f"arn:aws:states:eu-west-1:123456789012:stateMachine:{PREFIX}-batch"
    assert json.loads(target["Input"]) == {"input": f"s3://{BUCKET}/batch/input/"}
    [start] = small.statements("BatchScheduleRole")
    assert (start["Action"], start["Resource"]) == ("states:StartExecution", target["Arn"])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"max_payload_mb": 0}, "batch.max_payload_mb"),
        ({"max_payload_mb": 101}, "batch.max_payload_mb"),
        ({"max_concurrent_transforms": 0}, "batch.max_concurrent_transforms"),
        ({"instance_count": 101}, "batch.instance_count"),
        ({"instance_type": "ml.m5d.large"}, "batch.instance_type"),
        ({"schedule": "cron(0 3 * * *)"}, "batch.schedule"),
        ({"schedule": "every day"}, "batch.schedule"),
        ({"input_prefix": "/batch/input/"}, "batch.input_prefix"),
        ({"output_prefix": "batch/input/results/"}, "batch.output_prefix"),
        ({"timeout_minutes": 5}, "batch.timeout_minutes"),
        ({"content_type": "application/json"}, "batch.content_type"),
    ],
)
def test_settings_refuse_what_a_transform_job_cannot_take(override: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build(BatchSettings, {"enabled": True, **override}, "batch")
    assert raised.value.key == key


# --- the app, from the session synth ---------------------------------------------------------------------------
def test_batch_is_synthesized_where_cdk_json_enables_it(synthesized, cdk_context) -> None:
    environments = cdk_context["ml-platform"]["environments"]
    for env in ("dev", "staging", "prod"):
        machines = synthesized.resources(env, "inference", "AWS::StepFunctions::StateMachine")
        enabled = environments[env].get("batch", {}).get("enabled", False)
        assert len(machines) == (1 if enabled else 0), env
    assert environments["dev"]["batch"]["enabled"] is True


def test_dev_batch_runs_the_dev_endpoints_model(synthesized) -> None:
    [machine] = synthesized.resources("dev", "inference", "AWS::StepFunctions::StateMachine").values()
    # The keys come from the data stack (Fn::ImportValue): read the definition with every token as a placeholder.
    separator, parts = machine["Properties"]["DefinitionString"]["Fn::Join"]
    definition = json.loads(separator.join(p if isinstance(p, str) else "TOKEN" for p in parts))
    [model] = synthesized.resources("dev", "inference", "AWS::SageMaker::Model").values()
    request = definition["States"]["Transform"]["Parameters"]
    assert request["ModelName"] == model["Properties"]["ModelName"]
    assert machine["Properties"]["StateMachineName"] == "mlapi-dev-batch"
    # dev leaves payload and concurrency to the container's /execution-parameters answer
    assert "MaxPayloadInMB" not in request and "MaxConcurrentTransforms" not in request
    assert request["TransformInput"]["ContentType"] == "text/csv"
    assert definition["States"]["WholeInputPrefix"]["Result"]["input"].startswith("s3://mlapi-dev-artifacts-")
    assert request["TransformOutput"]["KmsKeyId"] == request["TransformResources"]["VolumeKmsKeyId"] == "TOKEN"


# --- /aws/sagemaker/TransformJobs: owned, encrypted, with the environment's retention (issue 18) -----------------
TRANSFORM_LOGS = "/aws/sagemaker/TransformJobs"


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def test_the_transform_job_log_group_is_owned_with_the_logs_key_and_the_environments_retention(small: Small) -> None:
    [group] = [g for g in small.of_type("AWS::Logs::LogGroup") if g["Properties"].get("LogGroupName") == TRANSFORM_LOGS]
    [logs_key] = [lid for lid in small.template["Resources"] if lid.startswith("LogsKey")]
    assert group["Properties"]["KmsKeyId"] == Resolver(small.template).get_att(logs_key, "Arn")
    assert group["Properties"]["RetentionInDays"] == 30  # the LogPolicy's, i.e. data.log_retention_days
    # The stack owns the group: the model's role may write to it but no longer create an unencrypted one.
    actions = _actions(small.statements("ModelExecutionRole"))
    assert "logs:PutLogEvents" in actions and "logs:CreateLogGroup" not in actions


def _two_environments(account: str | None, second_owns: bool) -> App:
    """Two environments' batch constructs in one app, each in its own stack of `account` (None: env-agnostic)."""
    app = App()
    for prefix in ("mlapi-dev", "mlapi-qa"):
        stack = Stack(app, prefix, env={"account": account, "region": "eu-west-1"} if account else None)
        vpc = imported_vpc(stack, zones=1)
        key = kms.Key(stack, "Key")
        logs = LogPolicy(key, 30, RemovalPolicy.DESTROY)
        source = ModelSource()
        endpoint = ModelEndpoint(
            stack, "Model", endpoint_name=f"{prefix}-endpoint",
            settings=EndpointSettings(initial_instance_count=1, min_capacity=1, max_capacity=2), source=source,
            release=ModelRelease.from_metadata_dir(source.artifact_dir), vpc=vpc,
            subnets=ec2.SubnetSelection(subnet_group_name="inference"),
            security_group=ec2.SecurityGroup(stack, "Sg", vpc=vpc), data_key=key,
            capture_bucket=s3.Bucket.from_bucket_name(stack, "Capture", "capture-bucket"),
            capture_bucket_name="capture-bucket", logs=logs,
        )  # fmt: skip
        topic = alarm_topic(stack, "Topic", prefix=prefix, key=key, emails=())
        BatchInference(
            stack, "Batch", prefix=prefix, settings=BatchSettings(enabled=True), model_endpoint=endpoint,
            bucket_name=f"{prefix}-artifacts", data_key=key, topic=topic, topic_key=key, logs=logs,
            owns_transform_log_group=prefix == "mlapi-dev" or second_owns,
        )  # fmt: skip
    return app


@pytest.mark.parametrize("account", ["123456789012", None])
def test_a_second_owner_of_the_transform_log_group_in_one_account_and_region_is_refused(account: str | None) -> None:
    with pytest.raises(ValueError, match="mlapi-dev already owns it where mlapi-qa would create it too"):
        _two_environments(account, second_owns=True)


def test_an_environment_that_does_not_own_the_group_creates_none_and_keeps_the_right_to_let_sagemaker() -> None:
    app = _two_environments("123456789012", second_owns=False)
    templates = {s.stack_name: s.template for s in app.synth().stacks}

    def groups(name: str) -> list[dict[str, Any]]:
        resources = templates[name]["Resources"].values()
        return [r for r in resources if r["Properties"].get("LogGroupName") == TRANSFORM_LOGS]

    assert len(groups("mlapi-dev")) == 1 and groups("mlapi-qa") == []
    policies = [r for r in templates["mlapi-qa"]["Resources"].values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    assert "logs:CreateLogGroup" in json.dumps(policies)  # no group of its own: SageMaker creates one if none exists


def test_dev_owns_the_transform_log_group_and_its_logs_key_admits_cloudwatch_logs_for_it(synthesized) -> None:
    from fnmatch import fnmatch

    groups = synthesized.resources("dev", "inference", "AWS::Logs::LogGroup").values()
    [group] = [g for g in groups if g["Properties"].get("LogGroupName") == TRANSFORM_LOGS]
    assert group["Properties"]["RetentionInDays"] == 30  # dev's data.log_retention_days in cdk.json
    key_arn = json.dumps(group["Properties"]["KmsKeyId"])
    assert "LogsKey" in key_arn, key_arn  # the environment's logs key (an import from the data stack)
    # The logs key's policy (CloudWatch Logs User Guide, "Encrypt log data in CloudWatch Logs using AWS KMS"):
    # logs.<region>.amazonaws.com, with the log group's ARN as kms:EncryptionContext:aws:logs:arn.
    statements = [
        statement
        for key in synthesized.resources("dev", "data", "AWS::KMS::Key").values()
        for statement in key["Properties"]["KeyPolicy"]["Statement"]
        if statement.get("Principal", {}).get("Service") == "logs.eu-west-1.amazonaws.com"
    ]
    [pattern] = [s["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] for s in statements]
    if isinstance(pattern, dict):  # Fn::Join of the partition and account
        pattern = "".join(p if isinstance(p, str) else "<account>" for p in pattern["Fn::Join"][1])
    pattern = pattern.replace("<account>", "123456789012")
    assert fnmatch(f"arn:aws:logs:eu-west-1:123456789012:log-group:{TRANSFORM_LOGS}", pattern), pattern

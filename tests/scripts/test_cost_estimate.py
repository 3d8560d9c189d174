"""make cost: the arithmetic on a small synthetic environment, and unusable input refused with its reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scripts import cost_estimate

PRICES: dict[str, Any] = json.loads(cost_estimate.DEFAULT_PRICES.read_text())
HOURS = PRICES["hours_per_month"]
MONTH_SECONDS = cost_estimate.SECONDS_PER_MONTH


def resource(kind: str, **properties: Any) -> dict[str, Any]:
    return {"Type": kind, "Properties": properties}


def small_environment(**overrides: Any) -> dict[str, Any]:
    resources = {
        "Config": resource(
            "AWS::SageMaker::EndpointConfig",
            ProductionVariants=[{"InstanceType": "ml.c6i.large", "InitialInstanceCount": 1}],
            DataCaptureConfig={"EnableCapture": True, "InitialSamplingPercentage": 10},
        ),
        "Target": resource("AWS::ApplicationAutoScaling::ScalableTarget", MinCapacity=1, MaxCapacity=3),
        "Policy": resource(
            "AWS::ApplicationAutoScaling::ScalingPolicy",
            TargetTrackingScalingPolicyConfiguration={
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "TargetValue": 6000,  # per minute: 100 requests/s per instance
            },
        ),
        "Api": resource("AWS::ApiGateway::RestApi"),
        "Acl": resource("AWS::WAFv2::WebACL", Rules=[{}, {}]),
        "Slow": resource("AWS::CloudWatch::Alarm", Period=300),
        "Fast": resource("AWS::CloudWatch::Alarm", Period=10),
        "Endpoint": resource("AWS::EC2::VPCEndpoint", VpcEndpointType="Interface", SubnetIds=["a", "b"]),
        "Gateway": resource("AWS::EC2::VPCEndpoint", VpcEndpointType="Gateway"),
        "Role": resource("AWS::IAM::Role"),
        **overrides,
    }
    return {"Resources": resources}


def write_assembly(root: Path, template: dict[str, Any], env: str = "dev") -> Path:
    (root / f"assembly-{env}").mkdir(parents=True)
    (root / f"assembly-{env}" / "devInference.template.json").write_text(json.dumps(template))
    return root


def lines_of(root: Path, rps: float) -> dict[str, cost_estimate.Line]:
    env = cost_estimate.load_environment(root, "dev", PRICES, rps)
    lines, _ = cost_estimate.estimate(env)
    return {line.item: line for line in lines}


def test_each_line_is_price_times_quantity(tmp_path: Path) -> None:
    lines = lines_of(write_assembly(tmp_path, small_environment()), rps=250)
    hourly = PRICES["sagemaker_hosting_per_hour"]["ml.c6i.large"]
    endpoint = lines["endpoint ml.c6i.large"]
    assert endpoint.idle == pytest.approx(hourly * HOURS)  # the autoscaling minimum
    assert endpoint.busy == pytest.approx(3 * hourly * HOURS)  # 250 req/s at 100 per instance
    requests = 250 * MONTH_SECONDS
    assert lines["API Gateway REST"].busy == pytest.approx(requests / 1e6 * PRICES["api_gateway_rest_per_million"])
    waf_fixed = PRICES["waf_web_acl_per_month"] + 2 * PRICES["waf_rule_per_month"]
    assert lines["WAF web ACL"].idle == pytest.approx(waf_fixed)
    assert lines["WAF web ACL"].busy == pytest.approx(waf_fixed + requests / 1e6 * PRICES["waf_per_million_requests"])
    alarms = (
        PRICES["cloudwatch_alarm_standard_per_metric_month"]
        + PRICES["cloudwatch_alarm_high_resolution_per_metric_month"]
    )
    assert lines["CloudWatch alarms"].idle == pytest.approx(alarms)
    # The gateway endpoint is free; the interface one bills per AZ it is in.
    assert lines["interface VPC endpoints"].idle == pytest.approx(2 * HOURS * PRICES["interface_endpoint_per_az_hour"])
    written_gb = requests * 0.10 * PRICES["usage"]["capture_record_bytes"] / cost_estimate.GB
    puts = PRICES["usage"]["capture_objects_per_hour"] * HOURS / 1000 * PRICES["s3_put_per_thousand"]
    assert lines["data capture to S3"].busy == pytest.approx(written_gb * PRICES["s3_standard_per_gb_month"] + puts)


def test_capacity_beyond_max_is_capped_and_said(tmp_path: Path) -> None:
    endpoint = lines_of(write_assembly(tmp_path, small_environment()), rps=1000)["endpoint ml.c6i.large"]
    assert endpoint.busy == pytest.approx(3 * PRICES["sagemaker_hosting_per_hour"]["ml.c6i.large"] * HOURS)
    assert "needs 10: over max_capacity 3" in endpoint.assumption


def test_log_storage_follows_retention(tmp_path: Path) -> None:
    groups = {
        "ShortAccessLogs": resource("AWS::Logs::LogGroup", RetentionInDays=30),
        "LongAccessLogs": resource("AWS::Logs::LogGroup", RetentionInDays=365),
    }
    lines = lines_of(write_assembly(tmp_path, small_environment(**groups)), rps=100)
    short, long = lines["logs ShortAccessLogs"].busy, lines["logs LongAccessLogs"].busy
    ingested = (
        PRICES["usage"]["idle_log_gb_per_month_per_group"]
        + 100 * MONTH_SECONDS * PRICES["usage"]["access_log_line_bytes"] / cost_estimate.GB
    )
    stored = ingested * PRICES["usage"]["logs_compression_ratio"]
    assert long - short == pytest.approx(stored * (365 - 30) / 30 * PRICES["logs_storage_per_gb_month"])


def test_an_unknown_resource_type_fails_naming_it(tmp_path: Path) -> None:
    template = small_environment(Thing=resource("AWS::Kinesis::Stream"))
    root = write_assembly(tmp_path, template)
    env = cost_estimate.load_environment(root, "dev", PRICES, 1)
    with pytest.raises(cost_estimate.EstimateError, match="AWS::Kinesis::Stream"):
        cost_estimate.estimate(env)


def test_an_unpriced_instance_type_fails_naming_the_table_key(tmp_path: Path) -> None:
    config = resource("AWS::SageMaker::EndpointConfig", ProductionVariants=[{"InstanceType": "ml.p5.48xlarge"}])
    root = write_assembly(tmp_path, small_environment(Config=config))
    assert cost_estimate.main(["--cloud-assembly", str(root), "--env", "dev"]) == 2


def test_a_missing_environment_says_to_synthesize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cost_estimate.main(["--cloud-assembly", str(tmp_path), "--env", "dev"]) == 2
    assert "make synth" in capsys.readouterr().err


def test_serverless_costs_nothing_idle(tmp_path: Path) -> None:
    config = resource(
        "AWS::SageMaker::EndpointConfig",
        ProductionVariants=[{"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}],
    )
    line = lines_of(write_assembly(tmp_path, small_environment(Config=config)), rps=10)["serverless inference"]
    seconds = PRICES["usage"].get("serverless_seconds_per_request", 0.02)
    assert line.idle == 0
    assert line.busy == pytest.approx(10 * MONTH_SECONDS * seconds * 2 * PRICES["sagemaker_serverless_per_gb_second"])


def monitor_environment(expression: str, **overrides: Any) -> dict[str, Any]:
    """Model Monitor: a data-quality job definition on 2 x ml.m5.xlarge and its schedule (by name), and a model-quality
    one on 1 x ml.m5.large, daily, its schedule referring to it by GetAtt."""
    cluster = {"InstanceCount": 2, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 20}
    return small_environment(
        DataQuality=resource(
            "AWS::SageMaker::DataQualityJobDefinition",
            JobDefinitionName="mlapi-dev-data-quality-1-0-0",
            JobResources={"ClusterConfig": cluster},
            StoppingCondition={"MaxRuntimeInSeconds": 1800},
        ),
        DataQualitySchedule=resource(
            "AWS::SageMaker::MonitoringSchedule",
            MonitoringScheduleName="mlapi-dev-data-quality",
            MonitoringScheduleConfig={
                "MonitoringJobDefinitionName": "mlapi-dev-data-quality-1-0-0",
                "MonitoringType": "DataQuality",
                "ScheduleConfig": {"ScheduleExpression": expression},
            },
        ),
        ModelQuality=resource(
            "AWS::SageMaker::ModelQualityJobDefinition",
            JobResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large"}},
        ),
        ModelQualitySchedule=resource(
            "AWS::SageMaker::MonitoringSchedule",
            MonitoringScheduleName="mlapi-dev-model-quality",
            MonitoringScheduleConfig={
                "MonitoringJobDefinitionName": {"Fn::GetAtt": ["ModelQuality", "JobDefinitionName"]},
                "MonitoringType": "ModelQuality",
                "ScheduleConfig": {"ScheduleExpression": "cron(0 12 ? * * *)"},
            },
        ),
        **overrides,
    )


def test_a_monitoring_schedule_runs_its_job_definitions_cluster_per_interval(tmp_path: Path) -> None:
    """Job definitions are free; each schedule bills runs x instances x the processing price x the assumed run time,
    whatever the request rate."""
    lines = lines_of(write_assembly(tmp_path, monitor_environment("cron(0 * ? * * *)")), rps=0)
    processing, seconds = PRICES["sagemaker_processing_per_hour"], PRICES["usage"]["model_monitor_run_seconds"]
    hourly = lines["Model Monitor mlapi-dev-data-quality"]
    assert hourly.idle == hourly.busy == pytest.approx(HOURS * 2 * processing["ml.m5.xlarge"] * seconds / 3600)
    assert "730 runs (hourly) x 2 ml.m5.xlarge" in hourly.assumption
    assert "usage.model_monitor_run_seconds" in hourly.assumption  # the run time is an assumption, said so
    cap = HOURS * 2 * processing["ml.m5.xlarge"] * 1800 / 3600
    assert f"{cap:.2f} if every run took its 1800 s cap" in hourly.assumption
    daily = lines["Model Monitor mlapi-dev-model-quality"]
    assert daily.idle == pytest.approx(HOURS / 24 * processing["ml.m5.large"] * seconds / 3600)
    assert not any(item.endswith("JobDefinition") for item in lines)


@pytest.mark.parametrize(
    ("expression", "per_day"),
    [("cron(0 * ? * * *)", 24), ("cron(0 0 ? * * *)", 1), ("cron(0 0/6 ? * * *)", 4), ("cron(0 17/12 ? * * *)", 2)],
)
def test_schedule_expressions_in_model_monitors_forms(expression: str, per_day: int) -> None:
    runs, _ = cost_estimate.monitor_runs_per_month(expression, HOURS)
    assert runs == pytest.approx(per_day * HOURS / 24)


def test_a_schedule_expression_model_monitor_does_not_take_is_refused(tmp_path: Path) -> None:
    root = write_assembly(tmp_path, monitor_environment("rate(1 hour)"))
    with pytest.raises(cost_estimate.EstimateError, match=r"'rate\(1 hour\)'"):
        lines_of(root, rps=0)


def test_an_unpriced_processing_instance_fails_naming_the_table_key(tmp_path: Path) -> None:
    template = monitor_environment("cron(0 * ? * * *)")
    template["Resources"]["DataQuality"]["Properties"]["JobResources"]["ClusterConfig"]["InstanceType"] = "ml.p5.48xl"
    with pytest.raises(cost_estimate.EstimateError, match="sagemaker_processing_per_hour"):
        lines_of(write_assembly(tmp_path, template), rps=0)


def test_the_hourly_fargate_drift_task_bills_vcpu_and_memory_per_run(tmp_path: Path) -> None:
    template = small_environment(
        Cluster=resource("AWS::ECS::Cluster"),
        Task=resource("AWS::ECS::TaskDefinition", Cpu="1024", Memory="4096"),
        Hourly=resource(
            "AWS::Events::Rule",
            ScheduleExpression="cron(5 * * * ? *)",
            Targets=[
                {"Arn": {"Fn::GetAtt": ["Cluster", "Arn"]}, "EcsParameters": {"TaskDefinitionArn": {"Ref": "Task"}}}
            ],
        ),
    )
    line = lines_of(write_assembly(tmp_path, template), rps=0)["drift job (hourly Fargate task)"]
    seconds = PRICES["usage"]["drift_run_seconds"]
    per_hour = PRICES["fargate_vcpu_per_hour"] + 4 * PRICES["fargate_gb_per_hour"]
    assert line.idle == pytest.approx(HOURS * per_hour * max(seconds, 60) / 3600)

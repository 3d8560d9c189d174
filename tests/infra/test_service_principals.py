"""Wherever an AWS service acts on one of our resources, the resource's policy and its key's policy let it.

One row per integration, each with the AWS page that states what the service needs. A topic policy, a queue
policy or a key policy that CloudFormation accepts can still refuse the service at run time, silently: an
alarm whose notification is never delivered, an event that never reaches its target.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.infra.app_model import Ref, StageModel, as_list, load_stages

ACCOUNT, REGION, PARTITION = "123456789012", "eu-west-1", "aws"


def render(value: Any) -> str:
    """A string with pseudo parameters and other references written out (others as `*`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Ref" in value:
        return {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": PARTITION}.get(value["Ref"], "*")
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(render(part) for part in parts)
    return "*"


def principals(statement: dict[str, Any]) -> set[str]:
    principal = statement.get("Principal", {})
    if not isinstance(principal, dict):
        return {str(principal)}
    return {render(p) for p in as_list(principal.get("Service", []))}


def allowing(statements: list[dict[str, Any]], service: str, actions: list[str]) -> list[dict[str, Any]]:
    """Allow statements for `service` that grant every one of `actions`."""
    found = []
    for statement in statements:
        if statement.get("Effect") != "Allow" or service not in principals(statement):
            continue
        granted = [a.lower() for a in as_list(statement.get("Action", []))]
        if all(any(fnmatch.fnmatch(action.lower(), pattern) for pattern in granted) for action in actions):
            found.append(statement)
    return found


def condition_values(statement: dict[str, Any], key: str) -> list[str]:
    values: list[str] = []
    for operator in statement.get("Condition", {}).values():
        for name, value in operator.items():
            if name.lower() == key.lower():
                values += [render(v) for v in as_list(value)]
    return values


def resource_policy_statements(stage: StageModel, target: Ref, policy_type: str, key: str) -> list | None:
    """Statements of the `policy_type` resources attached to `target` (None when it has no policy at all)."""
    statements, found = [], False
    for ref, policy in stage.resources(policy_type):
        if target in stage.targets(ref.stack, policy["Properties"].get(key, [])):
            found = True
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements if found else None


def key_statements(stage: StageModel, holder: Ref, key_property: str) -> list[dict[str, Any]] | None:
    """The key policy of the KMS key `holder` is encrypted with (None when it has no customer key)."""
    value = stage.resource(holder)["Properties"].get(key_property)
    key = stage.target(holder.stack, value) if value is not None else None
    if key is None or stage.resource(key)["Type"] != "AWS::KMS::Key":
        return None
    return stage.resource(key)["Properties"]["KeyPolicy"]["Statement"]


def topic_admits(stage: StageModel, topic: Ref, service: str, source_arn: str | None, problems: list[str]) -> None:
    statements = resource_policy_statements(stage, topic, "AWS::SNS::TopicPolicy", "Topics")
    if statements is not None:  # an explicit topic policy replaces SNS's default one
        grants = allowing(statements, service, ["sns:Publish"])
        if not grants:
            problems.append(f"{stage.name}: topic {topic.logical_id} does not let {service} publish")
        elif source_arn is not None:
            patterns = [pattern for g in grants for pattern in condition_values(g, "aws:SourceArn")]
            if not any(fnmatch.fnmatch(source_arn, pattern) for pattern in patterns):
                problems.append(
                    f"{stage.name}: topic {topic.logical_id}'s grant to {service} is not held to {source_arn}"
                )
    key = key_statements(stage, topic, "KmsMasterKeyId")
    if key is not None and not allowing(key, service, ["kms:GenerateDataKey", "kms:Decrypt"]):
        problems.append(f"{stage.name}: topic {topic.logical_id}'s key does not let {service} encrypt")


def alarms_notify_topics(stage: StageModel, problems: list[str]) -> Iterator[str]:
    # SNS Developer Guide, "Amazon SNS access control case examples"; "Encryption at rest": a CMK-encrypted topic
    # needs kms:GenerateDataKey*/kms:Decrypt for the publishing service. CloudWatch User Guide, "Using Amazon
    # CloudWatch alarms" (alarm actions publish as cloudwatch.amazonaws.com).
    for ref, alarm in stage.resources("AWS::CloudWatch::Alarm"):
        arn = f"arn:{PARTITION}:cloudwatch:{REGION}:{ACCOUNT}:alarm:{render(alarm['Properties'].get('AlarmName'))}"
        for action in ("AlarmActions", "OKActions", "InsufficientDataActions"):
            for topic in stage.targets(ref.stack, alarm["Properties"].get(action, [])):
                if stage.resource(topic)["Type"] == "AWS::SNS::Topic":
                    topic_admits(stage, topic, "cloudwatch.amazonaws.com", arn, problems)
                    yield topic.logical_id


def rules_reach_targets(stage: StageModel, problems: list[str]) -> Iterator[str]:
    # EventBridge User Guide, "Using resource-based policies for Amazon EventBridge" (SNS, SQS and Lambda
    # permissions) and "Using dead-letter queues to process undelivered events" (queue policy, KMS key).
    for ref, rule in stage.resources("AWS::Events::Rule"):
        for target in rule["Properties"].get("Targets", []):
            destination = stage.target(ref.stack, target["Arn"])
            kind = stage.resource(destination)["Type"] if destination else None
            if kind == "AWS::SNS::Topic":
                topic_admits(stage, destination, "events.amazonaws.com", None, problems)
            elif kind == "AWS::Lambda::Function":
                permitted = [
                    p
                    for pref, p in stage.resources("AWS::Lambda::Permission")
                    if stage.target(pref.stack, p["Properties"]["FunctionName"]) == destination
                    and p["Properties"]["Principal"] == "events.amazonaws.com"
                    and stage.target(pref.stack, p["Properties"].get("SourceArn")) == ref
                ]
                if not permitted:
                    problems.append(f"{stage.name}: rule {ref.logical_id} may not invoke {destination.logical_id}")
            queue_arn = target.get("DeadLetterConfig", {}).get("Arn")
            queue = stage.target(ref.stack, queue_arn) if queue_arn else None
            if queue is not None:
                statements = resource_policy_statements(stage, queue, "AWS::SQS::QueuePolicy", "Queues") or []
                if not allowing(statements, "events.amazonaws.com", ["sqs:SendMessage"]):
                    problems.append(f"{stage.name}: rule {ref.logical_id}'s DLQ {queue.logical_id} refuses EventBridge")
                key = key_statements(stage, queue, "KmsMasterKeyId")
                if key is not None and not allowing(
                    key, "events.amazonaws.com", ["kms:GenerateDataKey", "kms:Decrypt"]
                ):
                    problems.append(f"{stage.name}: rule {ref.logical_id}'s DLQ key refuses EventBridge")
            if kind in ("AWS::SNS::Topic", "AWS::Lambda::Function") or queue is not None:
                yield ref.logical_id


def alarm_name(stage: StageModel, stack: str, value: Any) -> str:
    alarm = stage.target(stack, value)
    return render(stage.resource(alarm)["Properties"]["AlarmName"]) if alarm else render(value)


def auto_rollback_reads_alarms(stage: StageModel, problems: list[str]) -> Iterator[str]:
    # SageMaker Developer Guide, "Auto-Rollback Configuration and Monitoring": the execution role needs
    # cloudwatch:DescribeAlarms on the auto-rollback alarms.
    for ref, endpoint in stage.resources("AWS::SageMaker::Endpoint"):
        alarms = endpoint["Properties"].get("DeploymentConfig", {}).get("AutoRollbackConfiguration", {})
        names = [alarm_name(stage, ref.stack, a["AlarmName"]) for a in alarms.get("Alarms", [])]
        if not names:
            continue
        config = stage.resource(stage.target(ref.stack, endpoint["Properties"]["EndpointConfigName"]))
        [variant] = config["Properties"]["ProductionVariants"]
        by_name = {m["Properties"].get("ModelName"): m for _, m in stage.resources("AWS::SageMaker::Model")}
        model_ref = stage.target(ref.stack, variant["ModelName"])
        model = stage.resource(model_ref) if model_ref else by_name[variant["ModelName"]]
        role = stage.target(ref.stack, model["Properties"]["ExecutionRoleArn"])
        granted = []
        for statement in stage.statements_of_role(role):
            if statement.get("Effect") == "Allow" and "cloudwatch:DescribeAlarms" in as_list(statement["Action"]):
                granted += [stage.target(role.stack, r) for r in as_list(statement["Resource"])]
        alarm_names = {render(stage.resource(a)["Properties"]["AlarmName"]) for a in granted if a}
        missing = set(names) - alarm_names
        if missing:
            problems.append(f"{stage.name}: endpoint {ref.logical_id}'s role cannot describe alarms {sorted(missing)}")
        yield ref.logical_id


def cloudtrail_uses_key_and_bucket(stage: StageModel, problems: list[str]) -> Iterator[str]:
    # CloudTrail User Guide, "Configure AWS KMS key policies for CloudTrail" (encrypt with the trail's encryption
    # context; DescribeKey in its own section, which carries no encryption context; kms:Decrypt for a bucket with
    # an S3 Bucket Key) and "Amazon S3 bucket policy for CloudTrail" (GetBucketAcl, PutObject).
    service = "cloudtrail.amazonaws.com"
    for ref, trail in stage.resources("AWS::CloudTrail::Trail"):
        key = key_statements(stage, ref, "KMSKeyId") or []
        encrypt = allowing(key, service, ["kms:GenerateDataKey"])
        if not any(condition_values(s, "kms:EncryptionContext:aws:cloudtrail:arn") for s in encrypt):
            problems.append(f"{stage.name}: trail key has no encrypt grant bound to CloudTrail's encryption context")
        describe = allowing(key, service, ["kms:DescribeKey"])
        if not [s for s in describe if not condition_values(s, "kms:EncryptionContext:aws:cloudtrail:arn")]:
            problems.append(f"{stage.name}: trail key's DescribeKey grant is bound to an encryption context")
        if not allowing(key, service, ["kms:Decrypt"]):
            problems.append(f"{stage.name}: trail key does not let CloudTrail decrypt (S3 Bucket Key)")
        bucket = stage.target(ref.stack, trail["Properties"]["S3BucketName"])
        statements = resource_policy_statements(stage, bucket, "AWS::S3::BucketPolicy", "Bucket") or []
        for action in ("s3:GetBucketAcl", "s3:PutObject"):
            if not allowing(statements, service, [action]):
                problems.append(f"{stage.name}: trail bucket does not allow CloudTrail {action}")
        yield ref.logical_id


def logs_use_their_key(stage: StageModel, problems: list[str]) -> Iterator[str]:
    # CloudWatch Logs User Guide, "Encrypt log data in CloudWatch Logs using AWS KMS": the key policy allows
    # logs.<region>.amazonaws.com, held by kms:EncryptionContext:aws:logs:arn to this account's log groups.
    service = f"logs.{REGION}.amazonaws.com"
    for ref, group in stage.resources("AWS::Logs::LogGroup"):
        key = key_statements(stage, ref, "KmsKeyId")
        if key is None:
            continue
        grants = allowing(key, service, ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"])
        group_arn = (
            f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{render(group['Properties'].get('LogGroupName', 'x'))}"
        )
        if not any(
            fnmatch.fnmatch(group_arn, pattern)
            for g in grants
            for pattern in condition_values(g, "kms:EncryptionContext:aws:logs:arn")
        ):
            problems.append(f"{stage.name}: log group {ref.logical_id}'s key does not let CloudWatch Logs use it")
        yield ref.logical_id


def access_logs_are_delivered(stage: StageModel, problems: list[str]) -> Iterator[str]:
    # S3 User Guide, "Enabling Amazon S3 server access logging": the target bucket's policy grants
    # logging.s3.amazonaws.com s3:PutObject (the bucket-policy method; ACLs are disabled).
    for ref, bucket in stage.resources("AWS::S3::Bucket"):
        logging = bucket["Properties"].get("LoggingConfiguration", {})
        if "DestinationBucketName" not in logging:
            continue
        destination = stage.target(ref.stack, logging["DestinationBucketName"])
        statements = resource_policy_statements(stage, destination, "AWS::S3::BucketPolicy", "Bucket") or []
        if not allowing(statements, "logging.s3.amazonaws.com", ["s3:PutObject"]):
            problems.append(f"{stage.name}: access logs of {ref.logical_id} cannot be delivered")
        yield ref.logical_id


def notifications_reach_topics(stage: StageModel, problems: list[str]) -> Iterator[str]:
    # Developer Tools console User Guide, "Configure Amazon SNS topics for notifications": the topic policy
    # allows codestar-notifications.amazonaws.com to publish; an encrypted topic's key must allow it too.
    for ref, rule in stage.resources("AWS::CodeStarNotifications::NotificationRule"):
        for target in rule["Properties"].get("Targets", []):
            topic = stage.target(ref.stack, target["TargetAddress"])
            if topic is not None and stage.resource(topic)["Type"] == "AWS::SNS::Topic":
                topic_admits(stage, topic, "codestar-notifications.amazonaws.com", None, problems)
                yield ref.logical_id


INTEGRATIONS: dict[str, Callable[[StageModel, list[str]], Iterator[str]]] = {
    "CloudWatch alarm actions -> SNS topics and their keys": alarms_notify_topics,
    "EventBridge targets -> topics, functions, dead-letter queues and their keys": rules_reach_targets,
    "SageMaker auto-rollback -> DescribeAlarms": auto_rollback_reads_alarms,
    "CloudTrail -> its key and bucket": cloudtrail_uses_key_and_bucket,
    "CloudWatch Logs -> the log groups' key": logs_use_their_key,
    "S3 server access logging -> the log bucket": access_logs_are_delivered,
    "CodeStar Notifications -> pipeline topics": notifications_reach_topics,
}
# Integrations the shipped config always has, so that a row cannot pass by finding nothing to check.
PRESENT_IN = {
    "CloudWatch alarm actions -> SNS topics and their keys": "dev",
    "EventBridge targets -> topics, functions, dead-letter queues and their keys": "dev",
    "SageMaker auto-rollback -> DescribeAlarms": "dev",
    "CloudTrail -> its key and bucket": "dev",
    "CloudWatch Logs -> the log groups' key": "dev",
    "S3 server access logging -> the log bucket": "dev",
    "CodeStar Notifications -> pipeline topics": "app",
}


@pytest.fixture(scope="module")
def stages(synthesized) -> list[StageModel]:
    return load_stages(synthesized.outdir)


@pytest.mark.parametrize("integration", list(INTEGRATIONS))
def test_the_service_may_act_on_our_resource(stages, integration: str) -> None:
    problems: list[str] = []
    checked = {stage.name: list(INTEGRATIONS[integration](stage, problems)) for stage in stages}
    assert checked[PRESENT_IN[integration]], f"nothing to check for {integration} in {PRESENT_IN[integration]}"
    assert not problems, "\n".join(problems)


def test_api_gateway_account_setting_is_declared_once_per_account_and_region(stages) -> None:
    # AWS::ApiGateway::Account is one setting per account and region: every stage declares it in the same
    # stack, with the same template, so no environment owns (or deletes) the role the others use.
    declared = {}
    for stage in stages:
        for ref, _ in stage.resources("AWS::ApiGateway::Account"):
            declared.setdefault(ref.stack, []).append(stage.templates[ref.stack])
            assert not ref.stack.endswith(("-inference", "-data", "-network")), ref
    assert len(declared) == 1, declared.keys()
    [templates] = declared.values()
    assert all(without_paths(t) == without_paths(templates[0]) for t in templates)


def without_paths(value: Any) -> Any:
    """The template without its construct paths (`aws:cdk:path` names the stage, so it differs by design)."""
    if isinstance(value, dict):
        return {k: without_paths(v) for k, v in value.items() if k != "aws:cdk:path"}
    if isinstance(value, list):
        return [without_paths(v) for v in value]
    return value

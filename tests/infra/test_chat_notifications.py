"""Chat delivery of pipeline notifications: one Chatbot channel per config, a role and guardrail that grant nothing."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template

from ml_constructs.chat_notifications import ChatNotifications
from ml_constructs.nag import add_rule_packs
from platform_config import ConfigError
from platform_config.loader import build
from platform_config.settings import ChatChannel

TEAM, TENANT = "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000"
CHANNELS = {
    "slack": ({"kind": "slack", "channel_id": "C0123456789", "slack_workspace_id": "T01234567"}, "Slack"),
    "teams": (
        {"kind": "teams", "channel_id": "19%3Aabc%40thread.tacv2", "teams_team_id": TEAM, "teams_tenant_id": TENANT},
        "MicrosoftTeams",
    ),
}


def synth(channel: dict[str, Any], tmp_path) -> Template:
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Chat", env={"account": "123456789012", "region": "eu-west-1"})
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    topic = sns.Topic(stack, "Approvals", enforce_ssl=True, master_key=key)
    settings = build(ChatChannel, channel, "ml-platform.pipeline.chat")
    ChatNotifications(stack, "Chat", name="ml-api-pipeline-approvals", channel=settings, topics=[topic])
    add_rule_packs(app)
    app.synth()  # every nag pack: the construct needs no acknowledgement
    return Template.from_stack(stack)


@pytest.mark.parametrize("kind", sorted(CHANNELS))
def test_the_channel_receives_the_topic_and_can_act_on_nothing(kind: str, tmp_path) -> None:
    channel, resource = CHANNELS[kind]
    template = synth(channel, tmp_path)
    [configuration] = template.find_resources(f"AWS::Chatbot::{resource}ChannelConfiguration").values()
    properties = configuration["Properties"]
    assert properties["ConfigurationName"] == "ml-api-pipeline-approvals"
    assert properties["SnsTopicArns"] == [{"Ref": next(iter(template.find_resources("AWS::SNS::Topic")))}]
    assert properties["UserRoleRequired"] is False
    template.has_resource_properties(
        "AWS::IAM::ManagedPolicy",
        {"PolicyDocument": {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}},
    )
    [role] = template.find_resources("AWS::IAM::Role").values()
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "chatbot.amazonaws.com"
    }
    assert "Policies" not in role["Properties"] and "ManagedPolicyArns" not in role["Properties"]
    template.resource_count_is("AWS::IAM::Policy", 0)
    [guardrail] = template.find_resources("AWS::IAM::ManagedPolicy")
    assert properties["GuardrailPolicies"] == [{"Ref": guardrail}]


@pytest.mark.parametrize(
    ("channel", "key"),
    [
        ({"kind": "slack", "channel_id": "C0123456789"}, "slack_workspace_id"),
        ({"kind": "slack", "channel_id": "general", "slack_workspace_id": "T01234567"}, "channel_id"),
        ({"kind": "teams", "channel_id": "19:x", "teams_team_id": TEAM}, "teams_tenant_id"),
        ({"kind": "discord", "channel_id": "x"}, "kind"),
    ],
)
def test_an_incomplete_channel_fails_naming_the_key(channel: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as error:
        build(ChatChannel, channel, "ml-platform.pipeline.chat")
    assert error.value.key == f"ml-platform.pipeline.chat.{key}"

"""AWS Chatbot delivery of SNS notifications to one Slack or Microsoft Teams channel."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_chatbot as chatbot
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from platform_config.settings import ChatChannel


class ChatNotifications(Construct):
    """Posts what `topics` publish to a chat channel; the channel can read nothing and change nothing.

    Exposes `configuration` (the Chatbot channel configuration) and `role`."""

    def __init__(
        self, scope: Construct, construct_id: str, *, name: str, channel: ChatChannel, topics: Sequence[sns.ITopic]
    ) -> None:
        super().__init__(scope, construct_id)
        # Chatbot runs channel commands with this role, capped by the guardrail. Notifications need
        # neither, so both grant nothing: no one in the channel can act on the account through Chatbot.
        self.role = iam.Role(
            self,
            "ChannelRole",
            assumed_by=iam.ServicePrincipal("chatbot.amazonaws.com"),
            description=f"{name}: AWS Chatbot channel role for notifications only; grants nothing",
        )
        guardrail = iam.ManagedPolicy(
            self,
            "Guardrail",
            description=f"{name}: denies every action to commands run from the chat channel",
            statements=[iam.PolicyStatement(effect=iam.Effect.DENY, actions=["*"], resources=["*"])],
        )
        # SNS decrypts before delivery, so a subscriber needs no grant on the topic's key (publishers do).
        topic_arns = [topic.topic_arn for topic in topics]
        self.configuration: chatbot.CfnSlackChannelConfiguration | chatbot.CfnMicrosoftTeamsChannelConfiguration
        if channel.kind == "slack":
            self.configuration = chatbot.CfnSlackChannelConfiguration(
                self,
                "Slack",
                configuration_name=name,
                slack_workspace_id=str(channel.slack_workspace_id),
                slack_channel_id=channel.channel_id,
                iam_role_arn=self.role.role_arn,
                sns_topic_arns=topic_arns,
                guardrail_policies=[guardrail.managed_policy_arn],
                logging_level="ERROR",
                user_role_required=False,
            )
        else:
            self.configuration = chatbot.CfnMicrosoftTeamsChannelConfiguration(
                self,
                "Teams",
                configuration_name=name,
                team_id=str(channel.teams_team_id),
                teams_channel_id=channel.channel_id,
                teams_tenant_id=str(channel.teams_tenant_id),
                iam_role_arn=self.role.role_arn,
                sns_topic_arns=topic_arns,
                guardrail_policies=[guardrail.managed_policy_arn],
                logging_level="ERROR",
                user_role_required=False,
            )

"""Decision locks: "one decision at a time" for a function without reserving concurrency (issue 13 item 9).

`ReservedConcurrentExecutions` fails stack creation when it would leave the account fewer than 100 unreserved
units ("You can reserve up to the Unreserved account concurrency value that is shown, minus 100 for functions that
don't have reserved concurrency": Lambda Developer Guide, "Configuring reserved concurrency for a function"), and
new accounts start with reduced concurrency quotas ("Lambda quotas"). A lease lock on a DynamoDB item gives the
same mutual exclusion with no quota: the runtime side is lambda_src/<function>/<package>/decision_lock.py.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from ml_constructs.platform_function import PlatformFunction
from ml_constructs.release_history_table import keyed_table

KEY_PREFIX = "LOCK#"  # the runtime's KEY_PREFIX: a function's statements reach only its own lock item
TTL_ATTRIBUTE = "expires_at"
LEASE_MARGIN_SECONDS = 30
# Lambda retries a failed asynchronous invocation twice, one and then two minutes later ("How Lambda handles errors
# and retries with asynchronous invocation"): a lease within that window is free by the last retry.
RETRY_WINDOW_SECONDS = 180


class DecisionLockTable(Construct):
    """A table of lease locks (pk `LOCK#<name>`, sk `LOCK`, TTL `expires_at`) that functions attach to.

    `attach(function, retried_when_busy=...)` gives a PlatformFunction its lock: the environment the runtime reads
    (DECISION_LOCK_TABLE, DECISION_LOCK_NAME = the function's name, DECISION_LOCK_LEASE_SECONDS = its timeout plus
    a margin, so a crashed holder's lease runs out) and statements on its own lock item only. Exposes `table`.
    """

    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.key = key
        # Expired items are deleted late by TTL; the runtime checks expiry itself, TTL only tidies up.
        self.table: dynamodb.Table = keyed_table(
            self, "Table", key=key, removal_policy=removal_policy, time_to_live_attribute=TTL_ATTRIBUTE
        )

    def attach(self, function: PlatformFunction, *, retried_when_busy: bool) -> str:
        """Wire `function` to its lock and return the lock's name.

        `retried_when_busy`: the function raises when another invocation holds the lock, for Lambda's retry; its
        lease must then end within Lambda's retry window and it must have retries, or a busy event is lost.
        """
        name = function.function_name
        lease = function.timeout_seconds + LEASE_MARGIN_SECONDS
        if retried_when_busy and (lease > RETRY_WINDOW_SECONDS or function.retry_attempts < 2):
            raise ValueError(
                f"{name}: a busy invocation waits for Lambda's two retries ({RETRY_WINDOW_SECONDS} s), so the lease "
                f"(timeout {function.timeout_seconds} s + {LEASE_MARGIN_SECONDS} s) must fit in them and "
                f"retry_attempts must be 2 (is {function.retry_attempts})"
            )
        environment = {
            "DECISION_LOCK_TABLE": self.table.table_name,
            "DECISION_LOCK_NAME": name,
            "DECISION_LOCK_LEASE_SECONDS": str(lease),
        }
        for variable, value in environment.items():
            function.function.add_environment(variable, value)
        region = Stack.of(self).region
        function.policy.add_statements(
            iam.PolicyStatement(
                actions=["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:DeleteItem"],
                resources=[self.table.table_arn],
                conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [KEY_PREFIX + name]}},
            ),
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                resources=[self.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}},
            ),
        )
        return name

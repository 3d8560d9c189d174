"""One decision at a time: a lease lock on a DynamoDB item, held by one invocation while it decides.

It replaces `ReservedConcurrentExecutions: 1` (issue 13 item 9): reserving concurrency fails stack creation in an
account whose concurrency quota leaves fewer than 100 unreserved units (Lambda Developer Guide, "Configuring
reserved concurrency for a function"; new accounts have reduced quotas, "Lambda quotas").

The lock item (table from `ml_constructs.decision_lock`): `pk = LOCK#<name>`, `sk = LOCK`, `holder` (the
invocation's request id), `subject` (what it decides: a CodePipeline job id, an EventBridge event id),
`expires_at` (epoch seconds, the table's TTL attribute). Acquiring is one conditional PutItem that succeeds when
the item is absent, its lease has run out, or this very request holds it: Lambda retries a failed asynchronous
invocation under the same request id (re:Post Knowledge Center, "lambda-function-duplicate-invocations"), and
only once the failed attempt has ended, so that holder is dead. TTL deletes expired items late ("typically within
a few days"; DynamoDB Developer Guide, "Working with expired items"), so expiry is part of the condition rather
than left to TTL. Releasing deletes the item only while this lease still holds it.

A lost race raises `LockBusy` (the caller decides what a busy lock means for it); any other DynamoDB error is
raised as it is: a lock that cannot be checked must not be taken for a free one.

This file exists once per Lambda code asset (each function's asset is its own folder under lambda_src/);
tests/lambda_src/test_decision_lock.py keeps the copies identical.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

TABLE_VARIABLE = "DECISION_LOCK_TABLE"
NAME_VARIABLE = "DECISION_LOCK_NAME"
LEASE_VARIABLE = "DECISION_LOCK_LEASE_SECONDS"
KEY_PREFIX = "LOCK#"
SORT_KEY = "LOCK"
CONDITION_FAILED = "ConditionalCheckFailedException"


@dataclass(frozen=True)
class Lease:
    """A held lock: who holds it, for what, until when (epoch seconds)."""

    holder: str
    subject: str
    expires_at: int


class LockBusy(Exception):
    """Another invocation holds the lock; `subject` says what it is deciding."""

    def __init__(self, name: str, holder: str, subject: str, expires_at: int) -> None:
        super().__init__(f"decision lock {name} is held by {holder} for {subject} until {expires_at}")
        self.name, self.holder, self.subject, self.expires_at = name, holder, subject, expires_at


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@dataclass
class DecisionLock:
    """The lock `name` in `table`, leased for `lease_seconds` (longer than the function's timeout)."""

    dynamodb: Any  # a boto3 DynamoDB client
    table: str
    name: str
    lease_seconds: int
    clock: Callable[[], float] = time.time

    @classmethod
    def from_environment(cls, dynamodb: Any) -> DecisionLock:
        """The lock ml_constructs.decision_lock wired to this function; unset variables fail loudly."""
        missing = [v for v in (TABLE_VARIABLE, NAME_VARIABLE, LEASE_VARIABLE) if not os.environ.get(v)]
        if missing:
            raise RuntimeError(
                f"decision lock not configured ({', '.join(missing)} unset): "
                "wire ml_constructs.decision_lock.DecisionLock to this function"
            )
        return cls(dynamodb, os.environ[TABLE_VARIABLE], os.environ[NAME_VARIABLE], int(os.environ[LEASE_VARIABLE]))

    @property
    def key(self) -> dict[str, dict[str, str]]:
        return {"pk": {"S": KEY_PREFIX + self.name}, "sk": {"S": SORT_KEY}}

    def acquire(self, *, holder: str, subject: str) -> Lease:
        """Take the lock for `subject`, or raise LockBusy naming the current holder."""
        for _ in range(2):  # a second try only when the holder released (or expired) between put and read
            now = int(self.clock())
            lease = Lease(holder, subject, now + self.lease_seconds)
            try:
                self.dynamodb.put_item(
                    TableName=self.table,
                    Item={
                        **self.key,
                        "holder": {"S": holder},
                        "subject": {"S": subject},
                        "expires_at": {"N": str(lease.expires_at)},
                        "acquired_at": {"N": str(now)},
                    },
                    ConditionExpression="attribute_not_exists(pk) OR expires_at <= :now OR holder = :holder",
                    ExpressionAttributeValues={":now": {"N": str(now)}, ":holder": {"S": holder}},
                )
                return lease
            except ClientError as error:
                if _code(error) != CONDITION_FAILED:
                    raise
            current = self.current()
            if current is not None and current.expires_at > now:
                raise LockBusy(self.name, current.holder, current.subject, current.expires_at)
        raise LockBusy(self.name, "unknown", "unknown", 0)

    def current(self) -> Lease | None:
        """The lease as the table holds it now (strongly consistent), expired or not."""
        item = self.dynamodb.get_item(TableName=self.table, Key=self.key, ConsistentRead=True).get("Item")
        if not item:
            return None
        return Lease(item["holder"]["S"], item.get("subject", {}).get("S", ""), int(item["expires_at"]["N"]))

    @contextmanager
    def held(self, *, holder: str, subject: str) -> Iterator[Lease]:
        """Hold the lock while the block runs; released in `finally`, so an exception gives it back too."""
        lease = self.acquire(holder=holder, subject=subject)
        try:
            yield lease
        finally:
            self.release(lease)

    def release(self, lease: Lease) -> bool:
        """Give the lock back; False when this lease had already run out and someone else holds it now."""
        try:
            self.dynamodb.delete_item(
                TableName=self.table,
                Key=self.key,
                ConditionExpression="holder = :holder AND expires_at = :expires",
                ExpressionAttributeValues={":holder": {"S": lease.holder}, ":expires": {"N": str(lease.expires_at)}},
            )
        except ClientError as error:
            if _code(error) != CONDITION_FAILED:
                raise
            return False
        return True

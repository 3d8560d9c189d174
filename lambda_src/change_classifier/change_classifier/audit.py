"""Audit records of the classifier's decisions (one item per job, written before any approval)."""

from __future__ import annotations

from typing import Any

WHO = "auto-classifier"


class AuditLog:
    """Writes decision items: pk = the audit partition, sk = DECISION#<when>#<job id>."""

    def __init__(self, table: Any, partition: str) -> None:
        self._table, self._partition = table, partition

    def record(self, when: str, job_id: str, decision: dict[str, Any]) -> dict[str, str]:
        key = {"pk": self._partition, "sk": f"DECISION#{when}#{job_id}"}
        self._table.put_item(Item={**key, "who": WHO, "when": when, "job_id": job_id, **decision},
                             ConditionExpression="attribute_not_exists(pk)")
        return key

    def settle(self, key: dict[str, str], approvals: dict[str, str], decision: str) -> None:
        self._table.update_item(Key=key, UpdateExpression="SET approvals = :a, decision = :d",
                                ExpressionAttributeValues={":a": approvals, ":d": decision})

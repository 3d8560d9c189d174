"""Audit records of the classifier's decisions: exactly one item per job, written before any approval.

The item is the job's intent: its key is the job's own (`sk = DECISION#<job id>`), so an invocation that finds
it (Lambda's retry after a failure that followed the write) completes that decision instead of deciding again,
and a second, contradictory record of the same job cannot be written. The function's role has PutItem and
UpdateItem on the table, no GetItem: the existing record is read with a conditional UpdateItem that also notes
the attempt (`attempts`, one timestamp per invocation that found it), which tells the last attempt.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

WHO = "auto-classifier"
CONDITION_FAILED = "ConditionalCheckFailedException"


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class AuditLog:
    """Writes and resumes decision items: pk = the audit partition, sk = DECISION#<job id>."""

    def __init__(self, table: Any, partition: str) -> None:
        self._table, self._partition = table, partition

    def key(self, job_id: str) -> dict[str, str]:
        return {"pk": self._partition, "sk": f"DECISION#{job_id}"}

    def resume(self, job_id: str, when: str) -> dict[str, Any] | None:
        """The job's recorded decision (with this attempt noted), or None when none is recorded."""
        try:
            response = self._table.update_item(
                Key=self.key(job_id),
                ConditionExpression="attribute_exists(pk)",
                UpdateExpression="SET attempts = list_append(if_not_exists(attempts, :none), :now)",
                ExpressionAttributeValues={":none": [], ":now": [when]},
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _code(error) != CONDITION_FAILED:
                raise
            return None
        return dict(response["Attributes"])

    def record(self, when: str, job_id: str, decision: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Write the decision unless the job has one; returns (the job's decision as stored, written now?)."""
        item = {**self.key(job_id), "who": WHO, "when": when, "job_id": job_id, "attempts": [when], **decision}
        try:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if _code(error) != CONDITION_FAILED:
                raise
            # Decided already: by an earlier attempt whose record this one could not see, or by this very write
            # when botocore retried it after a lost response. That decision stands.
            existing = self.resume(job_id, when)
            if existing is None:
                raise RuntimeError(
                    f"audit record of job {job_id}: the write was refused as a duplicate, yet no record is there"
                ) from error
            return existing, False
        return item, True

    def settle(self, job_id: str, approvals: dict[str, str], decision: str, summary: str) -> None:
        self._table.update_item(
            Key=self.key(job_id),
            ConditionExpression="attribute_exists(pk)",
            UpdateExpression="SET approvals = :a, decision = :d, summary = :s",
            ExpressionAttributeValues={":a": approvals, ":d": decision, ":s": summary},
        )

    def note_outcome(self, job_id: str, outcome: str) -> None:
        """Why the job ended without completing its decision (best effort: the log line is the primary record)."""
        self._table.update_item(
            Key=self.key(job_id),
            ConditionExpression="attribute_exists(pk)",
            UpdateExpression="SET outcome = :o",
            ExpressionAttributeValues={":o": outcome},
        )

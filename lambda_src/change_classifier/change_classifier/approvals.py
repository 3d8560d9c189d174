"""The manual approvals the classifier may answer: wait until they are pending, then approve them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from .job import Parameters

AUTO_APPROVAL_SUMMARY = "auto-approved: no model or inference change"
# A human (or an earlier run) answered first: the approval is settled, which is what we wanted.
_ALREADY_SETTLED = {"ApprovalAlreadyCompletedException", "InvalidApprovalTokenException"}


class PendingApprovals:
    """Reads approval tokens from GetPipelineState and answers them with PutApprovalResult."""

    def __init__(
        self,
        codepipeline: Any,
        parameters: Parameters,
        *,
        attempts: int,
        delay_seconds: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client, self._parameters = codepipeline, parameters
        self._attempts, self._delay, self._sleep = attempts, delay_seconds, sleep
        self.execution_id: str | None = None
        self.statuses: dict[str, str] = {}  # approval action -> its latest status, as last read

    def _read(self) -> dict[str, str]:
        """Tokens of the approval actions that are InProgress now; also notes the stage's execution id."""
        state = self._client.get_pipeline_state(name=self._parameters.pipeline)
        stage = next(
            (s for s in state.get("stageStates", []) if s.get("stageName") == self._parameters.approval_stage), None
        )
        if stage is None:
            raise LookupError(f"pipeline {self._parameters.pipeline} has no stage {self._parameters.approval_stage}")
        self.execution_id = stage.get("latestExecution", {}).get("pipelineExecutionId")
        tokens, self.statuses = {}, {}
        for action in stage.get("actionStates", []):
            latest = action.get("latestExecution") or {}
            if action.get("actionName") in self._parameters.approval_actions:
                self.statuses[action["actionName"]] = str(latest.get("status") or "not started")
            if (
                action.get("actionName") in self._parameters.approval_actions
                and latest.get("status") == "InProgress"
                and latest.get("token")
            ):
                tokens[action["actionName"]] = latest["token"]
        return tokens

    @property
    def attempts(self) -> int:
        return self._attempts

    def pending(self) -> dict[str, str]:
        """Tokens of the approval actions InProgress now (one read: a retry completing a recorded approval)."""
        return self._read()

    def current_execution(self) -> str | None:
        self._read()
        return self.execution_id

    def wait_until_pending(self) -> dict[str, str] | None:
        """Tokens of all approval actions once every one is InProgress; None if they are not in time.

        The classifier runs in parallel with the approvals (same stage and runOrder), so they may
        not have started yet when it gets here.
        """
        for attempt in range(self._attempts):
            tokens = self._read()
            if set(tokens) == set(self._parameters.approval_actions):
                return tokens
            if attempt + 1 < self._attempts:
                self._sleep(self._delay)
        return None

    def approve(self, tokens: dict[str, str], summary: str = AUTO_APPROVAL_SUMMARY) -> dict[str, str]:
        """Approve each action; returns {action: "approved" | "already settled: <code>"}."""
        results = {}
        for action, token in tokens.items():
            try:
                self._client.put_approval_result(
                    pipelineName=self._parameters.pipeline,
                    stageName=self._parameters.approval_stage,
                    actionName=action,
                    result={"summary": summary, "status": "Approved"},
                    token=token,
                )
                results[action] = "approved"
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code not in _ALREADY_SETTLED:
                    raise
                results[action] = f"already settled: {code}"
        return results

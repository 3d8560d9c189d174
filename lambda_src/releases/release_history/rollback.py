"""Rolling the endpoint back to a chosen release, shared by the controller and the CLI.

Intent before action (RELEASES.md): the decision is written (CONTROL#intent, conditional) before UpdateEndpoint,
and whoever finds it open -- a Lambda retry, the next alarm, an operator -- completes it, verifying with
DescribeEndpoint whether UpdateEndpoint already happened, instead of deciding again from a half-written history.
"""

from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from .endpoint import EndpointGateway
from .errors import EndpointBusyError, GaveUpError, TransientAwsError
from .repository import Intent, ReleaseRepository
from .timeutil import iso, utcnow

_TRANSIENT_CODES = {
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "Throttled",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "SlowDown",
    "InternalFailure",
    "InternalServerError",
    "InternalError",
    "ServiceUnavailable",
    "TransactionInProgressException",
}
T = TypeVar("T")
# Re-reads and re-tries of the history transaction within one invocation (a concurrent writer won the race).
_RECORD_TRIES = 3


def is_transient(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in _TRANSIENT_CODES or status >= 500


def is_busy(error: ClientError) -> bool:
    # UpdateEndpoint while an update runs: ValidationException "Cannot update in-progress endpoint".
    message = str(error.response.get("Error", {}).get("Message", ""))
    return "in-progress" in message or "Cannot update" in message


class RollbackResult(StrEnum):
    ROLLED_BACK = "rolled_back"
    ALREADY_ON_TARGET = "already_on_target"
    LOCKED = "locked"  # another intent is open: its owner (or the next retry) completes it
    ABANDONED = "abandoned"  # the endpoint moved to a third config meanwhile: nothing recorded


def roll_back(repo: ReleaseRepository, endpoint: EndpointGateway, intent: Intent) -> RollbackResult:
    """Open `intent`, then complete it. Raises EndpointBusyError / TransientAwsError (retry: the intent stays open
    and the retry completes it) or GaveUpError (the intent is closed as abandoned; operators must act)."""
    if not _aws(lambda: repo.open_intent(intent)):
        return RollbackResult.LOCKED
    return complete(repo, endpoint, intent)


def complete(repo: ReleaseRepository, endpoint: EndpointGateway, intent: Intent) -> RollbackResult:
    """Finish an open intent: UpdateEndpoint unless DescribeEndpoint shows it done, then record it."""
    state = _aws(endpoint.describe)
    if not state.moving_to(intent.to_release):
        if state.busy:
            raise EndpointBusyError(f"endpoint {endpoint.name} is {state.status}")
        if state.config_name != intent.from_release:
            note = f"endpoint is on {state.config_name}, neither {intent.from_release} nor {intent.to_release}"
            _aws(lambda: repo.close_intent(intent, outcome=str(RollbackResult.ABANDONED), at=iso(utcnow()), note=note))
            return RollbackResult.ABANDONED
        _update(repo, endpoint, intent)
    for _ in range(_RECORD_TRIES):
        if _aws(lambda: repo.record_rollback(intent, at=iso(utcnow()))):
            return RollbackResult.ROLLED_BACK
        current = _aws(repo.intent)
        if current is None or current.episode != intent.episode or current.completed_at:
            return RollbackResult.ROLLED_BACK  # recorded by someone else (a concurrent completion)
    raise TransientAwsError("the release history kept changing while recording the rollback")


def _update(repo: ReleaseRepository, endpoint: EndpointGateway, intent: Intent) -> None:
    try:
        endpoint.update_to(intent.to_release)
    except ClientError as error:
        if is_busy(error):
            raise EndpointBusyError(f"endpoint {endpoint.name} is being updated: {error}") from error
        if is_transient(error):
            raise TransientAwsError(f"UpdateEndpoint still failing after retries: {error}") from error
        # Not retryable (the target config was deleted, access denied): close the intent so that it does not
        # block later decisions, and tell operators.
        note = f"UpdateEndpoint to {intent.to_release} refused: {error}"
        _aws(lambda: repo.close_intent(intent, outcome="refused", at=iso(utcnow()), note=note))
        raise GaveUpError(note) from error
    except BotoCoreError as error:
        raise TransientAwsError(f"UpdateEndpoint still failing: {error}") from error


def _aws(call: Callable[[], T]) -> T:
    """Run one AWS call; transient errors become TransientAwsError (retry), others propagate."""
    try:
        return call()
    except ClientError as error:
        if is_transient(error):
            raise TransientAwsError(f"{error.operation_name} still failing after retries: {error}") from error
        raise
    except BotoCoreError as error:
        raise TransientAwsError(f"AWS call still failing after retries: {error}") from error

"""Rolling the endpoint back to a chosen release, shared by the controller and the CLI."""

from dataclasses import dataclass
from enum import StrEnum

from botocore.exceptions import BotoCoreError, ClientError

from .endpoint import EndpointGateway
from .errors import EndpointBusyError, TransientAwsError
from .repository import Release, ReleaseRepository, Status
from .timeutil import iso, utcnow

_TRANSIENT_CODES = {"ThrottlingException", "Throttling", "TooManyRequestsException",
                    "RequestLimitExceeded", "ProvisionedThroughputExceededException",
                    "InternalFailure", "InternalServerError", "ServiceUnavailable"}


def is_transient(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in _TRANSIENT_CODES or status >= 500


class RollbackResult(StrEnum):
    ROLLED_BACK = "rolled_back"
    ALREADY_ON_TARGET = "already_on_target"
    LOCKED = "locked"  # another invocation or operator holds the claim and is doing it


@dataclass(frozen=True)
class RollbackRequest:
    """Why and by whom; recorded on the bad release's history."""

    target: Release
    by: str
    reason: str
    alarm: str | None = None
    lock_seconds: int = 900


def roll_back(repo: ReleaseRepository, endpoint: EndpointGateway, request: RollbackRequest,
              holder: str) -> tuple[RollbackResult, Release | None]:
    """Claim the lock, re-check the endpoint, update it, then record bad -> rolled_back, target -> live.

    Returns the result and the release that was replaced (None if nothing was replaced).
    Raises EndpointBusyError (retry later) or TransientAwsError (AWS kept failing).
    """
    now = utcnow()
    if not repo.acquire_lock(holder, now=now, ttl_seconds=request.lock_seconds,
                             purpose=f"roll back to {request.target.release_id}"):
        return RollbackResult.LOCKED, None
    try:
        state = endpoint.describe()  # re-read under the claim: the earlier read may be stale
        if state.config_name == request.target.release_id:
            return RollbackResult.ALREADY_ON_TARGET, None
        if state.busy:
            raise EndpointBusyError(f"endpoint {endpoint.name} is {state.status}")
        endpoint.update_to(request.target.release_id)
        at = iso(utcnow())
        bad = repo.ensure(state.config_name, at, lambda: endpoint.config_metadata(state.config_name))
        _record(repo, bad, request, at)
        return RollbackResult.ROLLED_BACK, bad
    except ClientError as error:
        message = str(error.response.get("Error", {}).get("Message", ""))
        if "in-progress" in message or "Cannot update" in message:
            raise EndpointBusyError(f"endpoint {endpoint.name} is being updated: {message}") from error
        if is_transient(error):
            raise TransientAwsError(f"{error.operation_name} still failing after retries: {error}") from error
        raise
    except BotoCoreError as error:  # connection errors, timeouts
        raise TransientAwsError(f"AWS call still failing after retries: {error}") from error
    finally:
        repo.release_lock(holder)


def _record(repo: ReleaseRepository, bad: Release, request: RollbackRequest, at: str) -> None:
    if bad.status != Status.ROLLED_BACK:
        repo.transition(bad, Status.ROLLED_BACK, at=at, by=request.by, reason=request.reason,
                        updates={"rolled_back_at": at, "rollback_alarm": request.alarm,
                                 "rollback_reason": request.reason})
    # The target is the live release again. restored_at tells the controller that the switch is
    # not yet confirmed by the recorder (deployed_at is set when InService on it is recorded).
    target = repo.get(request.target.release_id) or request.target
    repo.transition(target, Status.LIVE, at=at, by=request.by,
                    reason=f"restored by rollback from {bad.release_id}",
                    updates={"live_at": target.live_at or at, "restored_at": at})

"""DynamoDB access for the release history (the only module that knows the table layout).

Table layout (single table, one partition per endpoint):
  pk = "ENDPOINT#<endpoint>"
  sk = "RELEASE#<endpoint config name>"   one item per release (release id == endpoint config name)
       "CONTROL#endpoint"                   config the endpoint was last seen InService on (switch detection)
       "CONTROL#freeze"                     automatic-rollback freeze flag
       "CONTROL#intent"                     the last rollback decision (open until recorded; see RELEASES.md)
       "LOCK#rollback"                      legacy claim item (no longer written; kept readable)
       "ALARM#<alarm>#<state timestamp>"    one item per alarm occurrence (dedupe, retry count; TTL)
GSI "status-index": partition status_key = "<endpoint>#<status>", sort status_changed_at (ISO UTC).
TTL attribute: expires_at (epoch seconds; only lock and alarm-occurrence items carry it).
"""

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from .errors import ConcurrentChangeError
from .timeutil import iso

STATUS_INDEX = "status-index"
TAG_SOURCE = "endpoint-config-tags"  # a record the recorder/controller made from the endpoint config's tags
_CONDITION_FAILED = {"ConditionalCheckFailedException", "TransactionCanceledException"}


class Status(StrEnum):
    DEPLOYING = "deploying"
    BAKING = "baking"
    LIVE = "live"
    ROLLED_BACK = "rolled_back"
    SUPERSEDED = "superseded"


@dataclass
class Release:
    """One deployment of an endpoint config; release_id is the endpoint config name."""

    release_id: str
    endpoint_name: str
    status: Status
    registered_at: str
    source: str = "pipeline"
    model_version: str | None = None
    model_hash: str | None = None
    image: str | None = None
    commit: str | None = None
    approved_by: list[str] = field(default_factory=list)
    # Written by scripts/register_release.py: the registry package, each approval stage's decision, and an
    # emergency override (who and why) when approvals were skipped.
    model_package_arn: str | None = None
    approvals: list[dict[str, Any]] = field(default_factory=list)
    emergency_override: dict[str, Any] | None = None
    status_changed_at: str | None = None
    deployed_at: str | None = None
    bake_until: str | None = None
    live_at: str | None = None
    superseded_by: str | None = None
    rolled_back_at: str | None = None
    rollback_alarm: str | None = None
    rollback_reason: str | None = None
    restored_at: str | None = None
    readmitted_at: str | None = None  # an operator forced a never-live or rolled-back release back on
    last_event_time: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def endpoint_config_name(self) -> str:
        return self.release_id

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "Release":
        known = {f.name for f in fields(cls)}
        values = {k: _plain(v) for k, v in item.items() if k in known}
        values["status"] = Status(values["status"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Status) else v) for k, v in asdict(self).items()}


class IntentState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class Intent:
    """A rollback decided and written before UpdateEndpoint; whoever finds it open completes it."""

    episode: str  # the alarm occurrence, or "operator:<uuid>" for the CLI
    from_release: str
    to_release: str
    by: str
    reason: str
    opened_at: str
    automatic: bool
    alarm: str | None = None
    state: IntentState = IntentState.OPEN
    completed_at: str | None = None
    outcome: str | None = None
    note: str | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "Intent":
        return cls(
            episode=item["episode"],
            from_release=item["from_release"],
            to_release=item["to_release"],
            by=item["by"],
            reason=item.get("reason", ""),
            opened_at=item["opened_at"],
            automatic=bool(item.get("automatic")),
            alarm=item.get("alarm"),
            state=IntentState(item.get("intent_state", "open")),
            completed_at=item.get("completed_at"),
            outcome=item.get("outcome"),
            note=item.get("note"),
        )


@dataclass(frozen=True)
class Freeze:
    """Operator switch that turns automatic rollback into notify-only."""

    frozen: bool
    reason: str | None = None
    by: str | None = None
    at: str | None = None


# What a pipeline registration adds to a record made from tags.
_PIPELINE_FIELDS = (
    "source",
    "registered_at",
    "model_version",
    "model_hash",
    "image",
    "commit",
    "approved_by",
    "model_package_arn",
    "approvals",
    "emergency_override",
)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# DynamoDB API Reference, TransactWriteItems: a TransactionCanceledException lists one CancellationReason per
# action, Code "None" where that action had no error. Only lost conditions and conflicts are a changed history;
# a ValidationError (item over 400 KB, bad data) is a refusal no re-read can fix.
_LOST_RACE = {None, "None", "ConditionalCheckFailed", "TransactionConflict"}


def _condition_failed(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code")
    if code == "TransactionCanceledException":
        reasons = error.response.get("CancellationReasons") or []
        return all(reason.get("Code") in _LOST_RACE for reason in reasons)
    return code in _CONDITION_FAILED


class ReleaseRepository:
    """Reads and writes release records with conditional writes, so replays change nothing twice."""

    def __init__(self, table: Any, endpoint_name: str) -> None:
        self._table = table
        self.endpoint_name = endpoint_name
        self._pk = f"ENDPOINT#{endpoint_name}"

    # ---- releases -------------------------------------------------------------------------
    def get(self, release_id: str) -> Release | None:
        item = self._table.get_item(Key=self._key(f"RELEASE#{release_id}"), ConsistentRead=True).get("Item")
        return Release.from_item(item) if item else None

    def register(self, release: Release) -> bool:
        """Create the record; False if a release with that id already exists (never overwritten)."""
        release.status_changed_at = release.status_changed_at or release.registered_at
        if not release.history:
            release.history = [
                {"at": release.registered_at, "to": str(release.status), "by": release.source, "reason": "registered"}
            ]
        item = {k: v for k, v in release.to_dict().items() if v not in (None, [], "")}
        item.update(
            self._key(f"RELEASE#{release.release_id}"),
            status_key=self._status_key(release.status),
            approved_by=release.approved_by,
            history=release.history,
        )
        try:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if _condition_failed(error):
                return release.source != TAG_SOURCE and self._enrich(release)
            raise
        return True

    def _enrich(self, release: Release) -> bool:
        """The pipeline's registration arrived after the recorder made a record from the config's tags (an
        InService event first): keep the status and history, take the pipeline's metadata and approvals."""
        fields_ = {k: v for k, v in release.to_dict().items() if k in _PIPELINE_FIELDS and v not in (None, [], "")}
        names = {f"#m{i}": k for i, k in enumerate(fields_)}
        values: dict[str, Any] = {f":m{i}": v for i, v in enumerate(fields_.values())}
        sets = ", ".join(f"#m{i} = :m{i}" for i in range(len(fields_)))
        names["#source"], values[":tags"] = "source", TAG_SOURCE
        try:
            self._table.update_item(
                Key=self._key(f"RELEASE#{release.release_id}"),
                UpdateExpression=f"SET {sets}",
                ConditionExpression="#source = :tags",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if _condition_failed(error):
                return False  # registered by the pipeline already: never overwritten
            raise
        return True

    def ensure(self, release_id: str, at: str, load_metadata: Callable[[], dict[str, Any]]) -> Release:
        """Return the release, creating a minimal `deploying` record from config tags if unseen."""
        existing = self.get(release_id)
        if existing:
            return existing
        release = Release(
            release_id=release_id,
            endpoint_name=self.endpoint_name,
            status=Status.DEPLOYING,
            registered_at=at,
            source=TAG_SOURCE,
            **load_metadata(),
        )
        self.register(release)  # a concurrent creator may win; either way re-read the stored one
        stored = self.get(release_id)
        if stored is None:
            raise ConcurrentChangeError(f"release {release_id} was neither created nor found")
        return stored

    def list_releases(self) -> list[Release]:
        """All releases of the endpoint, newest registration first."""
        items = self._query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": self._pk, ":prefix": "RELEASE#"},
        )
        releases = [Release.from_item(i) for i in items]
        return sorted(releases, key=lambda r: (r.registered_at, r.release_id), reverse=True)

    def by_status(self, status: Status) -> list[Release]:
        """Releases currently in `status`, most recent status change first (GSI, eventually consistent)."""
        items = self._query(
            IndexName=STATUS_INDEX,
            ScanIndexForward=False,
            KeyConditionExpression="status_key = :k",
            ExpressionAttributeValues={":k": self._status_key(status)},
        )
        return [Release.from_item(i) for i in items]

    def last_known_good(self, exclude: str | None = None) -> Release | None:
        """The newest release that passed its bake and was not rolled back since.

        Defined as: among releases other than `exclude` whose status is `live` or `superseded`
        and that have a live_at (went live at least once), the current `live` one if any,
        otherwise the most recently superseded one (i.e. the one live just before).
        """
        for status in (Status.LIVE, Status.SUPERSEDED):
            for release in self.by_status(status):
                if release.release_id != exclude and release.live_at:
                    return release
        return None

    def transition(
        self,
        release: Release,
        to: Status,
        *,
        at: str,
        by: str,
        reason: str,
        event_time: str | None = None,
        updates: dict[str, Any] | None = None,
    ) -> bool:
        """Move `release` from its current (read) status to `to`; False if it changed meanwhile.

        With event_time, the write also requires the record's last_event_time to be older, so
        duplicate and out-of-order endpoint events are ignored.
        """
        entry = {"at": at, "from": str(release.status), "to": str(to), "by": by, "reason": reason}
        sets = {"status": str(to), "status_key": self._status_key(to), "status_changed_at": at, **(updates or {})}
        return self._update(release.release_id, sets, entry, expected_status=release.status, event_time=event_time)

    def note_event(
        self, release: Release, *, event_time: str, by: str, reason: str, updates: dict[str, Any] | None = None
    ) -> bool:
        """Append an audit entry (and optional fields) without changing the status."""
        entry = {"at": event_time, "status": str(release.status), "by": by, "reason": reason}
        return self._update(
            release.release_id, updates or {}, entry, expected_status=release.status, event_time=event_time
        )

    def promote(self, release: Release, *, at: str, by: str, reason: str) -> bool:
        """Atomically make a baking release live and supersede the previous live one(s)."""
        actions = [self._transition_action(release, Status.LIVE, at, by, reason, {"live_at": at})]
        for previous in self.by_status(Status.LIVE):
            if previous.release_id != release.release_id:
                actions.append(
                    self._transition_action(
                        previous,
                        Status.SUPERSEDED,
                        at,
                        by,
                        f"superseded by {release.release_id}",
                        {"superseded_by": release.release_id},
                    )
                )
        try:
            self._table.meta.client.transact_write_items(TransactItems=actions)
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    # ---- endpoint position ------------------------------------------------------------------
    def position(self) -> tuple[str | None, str | None]:
        """(config, event time) of the newest InService event fully recorded."""
        item = self._table.get_item(Key=self._key("CONTROL#endpoint"), ConsistentRead=True).get("Item") or {}
        return item.get("config_name"), item.get("last_event_time")

    def set_position(self, config_name: str, event_time: str) -> bool:
        """Written last, after everything the InService event changes: a retry that finds it older redoes the
        (idempotent) rest. False when a newer event was recorded meanwhile."""
        try:
            self._table.update_item(
                Key=self._key("CONTROL#endpoint"),
                UpdateExpression="SET config_name = :c, last_event_time = :t",
                ConditionExpression="attribute_not_exists(last_event_time) OR last_event_time < :t",
                ExpressionAttributeValues={":c": config_name, ":t": event_time},
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    # ---- rollback intent --------------------------------------------------------------------
    def intent(self) -> Intent | None:
        item = self._table.get_item(Key=self._key("CONTROL#intent"), ConsistentRead=True).get("Item")
        return Intent.from_item(item) if item else None

    def open_intent(self, intent: Intent) -> bool:
        """Write the decision before acting; False if another intent is open (someone else is rolling back)."""
        item = {
            **self._key("CONTROL#intent"),
            "episode": intent.episode,
            "from_release": intent.from_release,
            "to_release": intent.to_release,
            "by": intent.by,
            "reason": intent.reason,
            "opened_at": intent.opened_at,
            "automatic": intent.automatic,
            "intent_state": str(IntentState.OPEN),
        }
        if intent.alarm:
            item["alarm"] = intent.alarm
        try:
            self._table.put_item(
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR intent_state = :closed",
                ExpressionAttributeValues={":closed": str(IntentState.CLOSED)},
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def close_intent(self, intent: Intent, *, outcome: str, at: str, note: str = "") -> bool:
        """Close without recording a rollback (abandoned: the endpoint moved elsewhere, the target is gone)."""
        try:
            self._table.update_item(Key=self._key("CONTROL#intent"), **self._close_parts(intent, outcome, at, note))
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def record_rollback(self, intent: Intent, *, at: str) -> bool:
        """In one transaction: the bad release rolled_back, the target live again (or, never live, back to
        deploying so that the recorder bakes it), any other live release superseded, the intent closed.
        False when a condition failed (a release changed since it was read, or the intent is closed)."""
        bad, target = self.get(intent.from_release), self.get(intent.to_release)
        actions = []
        if bad is not None and bad.status != Status.ROLLED_BACK:
            actions.append(
                self._transition_action(
                    bad,
                    Status.ROLLED_BACK,
                    at,
                    intent.by,
                    intent.reason,
                    {"rolled_back_at": at, "rollback_alarm": intent.alarm, "rollback_reason": intent.reason},
                )
            )
        if target is not None:
            restored = target.live_at is not None
            to = Status.LIVE if restored else Status.DEPLOYING
            if target.status != to and not (not restored and target.status in (Status.DEPLOYING, Status.BAKING)):
                actions.append(
                    self._transition_action(
                        target,
                        to,
                        at,
                        intent.by,
                        f"restored by rollback from {intent.from_release}",
                        {"restored_at": at} if restored else {"readmitted_at": at},
                    )
                )
            if restored:
                for other in self.by_status(Status.LIVE):
                    if other.release_id not in (intent.from_release, intent.to_release):
                        actions.append(
                            self._transition_action(
                                other,
                                Status.SUPERSEDED,
                                at,
                                intent.by,
                                f"superseded by {intent.to_release}",
                                {"superseded_by": intent.to_release},
                            )
                        )
        actions.append(
            {
                "Update": {
                    "TableName": self._table.name,
                    "Key": self._key("CONTROL#intent"),
                    **self._close_parts(intent, "rolled_back", at, ""),
                }
            }
        )
        try:
            self._table.meta.client.transact_write_items(TransactItems=actions)
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def _close_parts(self, intent: Intent, outcome: str, at: str, note: str) -> dict[str, Any]:
        return {
            "UpdateExpression": "SET intent_state = :closed, completed_at = :at, outcome = :o, note = :n",
            "ConditionExpression": "intent_state = :open AND episode = :e",
            "ExpressionAttributeValues": {
                ":closed": str(IntentState.CLOSED),
                ":open": str(IntentState.OPEN),
                ":at": at,
                ":o": outcome,
                ":n": note,
                ":e": intent.episode,
            },
        }

    # ---- freeze flag ------------------------------------------------------------------------
    def get_freeze(self) -> Freeze:
        item = self._table.get_item(Key=self._key("CONTROL#freeze"), ConsistentRead=True).get("Item")
        if not item:
            return Freeze(frozen=False)
        return Freeze(frozen=bool(item.get("frozen")), reason=item.get("reason"), by=item.get("by"), at=item.get("at"))

    def set_freeze(self, frozen: bool, *, reason: str, by: str, at: str) -> None:
        entry = {"at": at, "frozen": frozen, "by": by, "reason": reason}
        self._table.update_item(
            Key=self._key("CONTROL#freeze"),
            UpdateExpression="SET frozen = :f, reason = :r, #by = :b, #at = :a, "
            "#history = list_append(if_not_exists(#history, :empty), :entry)",
            ExpressionAttributeNames={"#by": "by", "#at": "at", "#history": "history"},
            ExpressionAttributeValues={":f": frozen, ":r": reason, ":b": by, ":a": at, ":entry": [entry], ":empty": []},
        )

    # ---- rollback lock ----------------------------------------------------------------------
    def acquire_lock(self, holder: str, *, now: datetime, ttl_seconds: int, purpose: str) -> bool:
        """Claim the right to call UpdateEndpoint; an expired claim (crashed holder) can be taken over."""
        until = now + timedelta(seconds=ttl_seconds)
        try:
            self._table.put_item(
                Item={
                    **self._key("LOCK#rollback"),
                    "holder": holder,
                    "purpose": purpose,
                    "until": iso(until),
                    "expires_at": int(until.timestamp()) + 86400,
                },
                ConditionExpression="attribute_not_exists(pk) OR #until < :now",
                ExpressionAttributeNames={"#until": "until"},
                ExpressionAttributeValues={":now": iso(now)},
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def release_lock(self, holder: str) -> None:
        try:
            self._table.delete_item(
                Key=self._key("LOCK#rollback"),
                ConditionExpression="holder = :h",
                ExpressionAttributeValues={":h": holder},
            )
        except ClientError as error:
            if not _condition_failed(error):
                raise

    # ---- alarm occurrences ------------------------------------------------------------------
    def alarm_outcome(self, occurrence: str) -> str | None:
        item = self._table.get_item(Key=self._key(f"ALARM#{occurrence}"), ConsistentRead=True).get("Item")
        return item.get("outcome") if item else None

    def count_alarm_attempt(self, occurrence: str, *, now: datetime) -> int:
        result = self._table.update_item(
            Key=self._key(f"ALARM#{occurrence}"),
            UpdateExpression="ADD attempts :one SET expires_at = :exp",
            ExpressionAttributeValues={":one": 1, ":exp": int(now.timestamp()) + 30 * 86400},
            ReturnValues="UPDATED_NEW",
        )
        return int(result["Attributes"]["attempts"])

    def settle_alarm(self, occurrence: str, outcome: str, *, now: datetime, detail: str) -> bool:
        """Record the final outcome of one alarm occurrence; False if already settled."""
        try:
            self._table.update_item(
                Key=self._key(f"ALARM#{occurrence}"),
                UpdateExpression="SET outcome = :o, detail = :d, settled_at = :a, expires_at = :exp",
                ConditionExpression="attribute_not_exists(outcome)",
                ExpressionAttributeValues={
                    ":o": outcome,
                    ":d": detail,
                    ":a": iso(now),
                    ":exp": int(now.timestamp()) + 30 * 86400,
                },
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    # ---- internals --------------------------------------------------------------------------
    def _key(self, sk: str) -> dict[str, str]:
        return {"pk": self._pk, "sk": sk}

    def _status_key(self, status: Status) -> str:
        return f"{self.endpoint_name}#{status}"

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            page = self._table.query(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _update_parts(
        self, sets: dict[str, Any], entry: dict[str, Any], expected_status: Status, event_time: str | None
    ) -> dict[str, Any]:
        names = {"#status": "status", "#history": "history"}
        values: dict[str, Any] = {":expected": str(expected_status), ":entry": [entry], ":empty": []}
        clauses = ["#history = list_append(if_not_exists(#history, :empty), :entry)"]
        for i, (name, value) in enumerate(sets.items()):
            names[f"#f{i}"], values[f":f{i}"] = name, value
            clauses.append(f"#f{i} = :f{i}")
        condition = "attribute_exists(pk) AND #status = :expected"
        if event_time:
            names["#evt"], values[":evt"] = "last_event_time", event_time
            clauses.append("#evt = :evt")
            condition += " AND (attribute_not_exists(#evt) OR #evt < :evt)"
        return {
            "UpdateExpression": "SET " + ", ".join(clauses),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def _update(
        self,
        release_id: str,
        sets: dict[str, Any],
        entry: dict[str, Any],
        expected_status: Status,
        event_time: str | None,
    ) -> bool:
        try:
            self._table.update_item(
                Key=self._key(f"RELEASE#{release_id}"), **self._update_parts(sets, entry, expected_status, event_time)
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def _transition_action(
        self, release: Release, to: Status, at: str, by: str, reason: str, updates: dict[str, Any]
    ) -> dict[str, Any]:
        entry = {"at": at, "from": str(release.status), "to": str(to), "by": by, "reason": reason}
        sets = {"status": str(to), "status_key": self._status_key(to), "status_changed_at": at, **updates}
        parts = self._update_parts(sets, entry, release.status, None)
        return {"Update": {"TableName": self._table.name, "Key": self._key(f"RELEASE#{release.release_id}"), **parts}}

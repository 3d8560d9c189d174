"""Release repository: registration, ordering guards, last known good, freeze and lock."""

from datetime import timedelta

from release_history.repository import Status
from release_history.timeutil import iso, parse_time, utcnow
from release_world import World


def test_register_never_overwrites(world: World) -> None:
    world.register("ml-api-v1", 0)
    release = world.repo.get("ml-api-v1")
    assert release is not None and not world.repo.register(release)


def test_transition_requires_the_read_status_and_newer_events(world: World) -> None:
    world.register("ml-api-v1", 0)
    v1 = world.repo.get("ml-api-v1")
    assert v1 is not None
    at = iso(world.at(5))
    assert world.repo.transition(v1, Status.BAKING, at=at, by="t", reason="r", event_time=at)
    assert not world.repo.transition(v1, Status.BAKING, at=at, by="t", reason="again", event_time=at)
    baking = world.repo.get("ml-api-v1")
    assert baking is not None
    assert not world.repo.note_event(baking, event_time=iso(world.at(4)), by="t", reason="older")
    assert world.repo.note_event(baking, event_time=iso(world.at(6)), by="t", reason="newer")


def test_last_known_good_prefers_live_then_most_recently_superseded(world: World) -> None:
    for minutes, config in enumerate(("ml-api-v1", "ml-api-v2", "ml-api-v3")):
        world.register(config, minutes)
        release = world.repo.get(config)
        assert release is not None
        at = iso(world.at(10 * minutes + 1))
        world.repo.transition(release, Status.BAKING, at=at, by="t", reason="r")
        baking = world.repo.get(config)
        assert baking is not None and world.repo.promote(baking, at=iso(world.at(10 * minutes + 2)), by="t", reason="r")
    assert world.repo.last_known_good().release_id == "ml-api-v3"  # type: ignore[union-attr]
    assert world.repo.last_known_good(exclude="ml-api-v3").release_id == "ml-api-v2"  # type: ignore[union-attr]
    assert world.status("ml-api-v1") == Status.SUPERSEDED


def test_freeze_round_trip(world: World) -> None:
    assert not world.repo.get_freeze().frozen
    world.repo.set_freeze(True, reason="incident", by="bob", at="2024-01-01T00:00:00.000000Z")
    assert world.repo.get_freeze().frozen and world.repo.get_freeze().by == "bob"


def test_lock_is_exclusive_until_released_or_expired(world: World) -> None:
    now = utcnow()
    assert world.repo.acquire_lock("a", now=now, ttl_seconds=60, purpose="t")
    assert not world.repo.acquire_lock("b", now=now, ttl_seconds=60, purpose="t")
    assert world.repo.acquire_lock("b", now=now + timedelta(seconds=61), ttl_seconds=60, purpose="t")
    world.repo.release_lock("a")  # not the holder any more: no effect
    assert not world.repo.acquire_lock("c", now=now + timedelta(seconds=62), ttl_seconds=60, purpose="t")
    world.repo.release_lock("b")
    assert world.repo.acquire_lock("c", now=now + timedelta(seconds=62), ttl_seconds=60, purpose="t")


def test_parse_time_accepts_event_formats() -> None:
    assert parse_time("2019-10-02T17:04:40.985+0000") == parse_time("2019-10-02T17:04:40.985Z")
    assert parse_time(1570035880985) == parse_time("2019-10-02T17:04:40.985Z")


def test_a_transaction_refused_for_validation_is_not_taken_for_a_lost_race() -> None:
    # DynamoDB API Reference, TransactWriteItems: one CancellationReason per action; only ConditionalCheckFailed
    # and TransactionConflict mean the history changed under us. A ValidationError must surface, not be re-read.
    from botocore.exceptions import ClientError
    from release_history.repository import _condition_failed

    def cancelled(*codes: str) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                "CancellationReasons": [{"Code": code} for code in codes],
            },
            "TransactWriteItems",
        )

    assert _condition_failed(cancelled("None", "ConditionalCheckFailed", "None"))
    assert _condition_failed(cancelled("TransactionConflict"))
    assert not _condition_failed(cancelled("None", "ValidationError"))

"""Operator CLI against moto: list/show/register/rollback/freeze, JSON output and error exits."""

import json

import pytest
from release_history import recorder
from release_history.cli import main
from release_history.repository import Status
from release_world import LambdaContext, World

CTX = LambdaContext()


@pytest.fixture
def history(world: World) -> World:
    """v1 superseded, v2 live and serving, v3 registered but never deployed."""
    for minutes, config in ((0, "ml-api-v1"), (10, "ml-api-v2")):
        world.register(config, minutes)
        world.set_endpoint(config)
        recorder.handler(world.state_event("IN_SERVICE", config, minutes + 5), CTX)
        recorder.handler(world.schedule_event(), CTX)
    world.register("ml-api-v3", 20)
    return world


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_and_show(history: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "releases", "list", "--json")
    assert code == 0
    assert [(r["release_id"], r["status"]) for r in json.loads(out)] == [
        ("ml-api-v3", "deploying"),
        ("ml-api-v2", "live"),
        ("ml-api-v1", "superseded"),
    ]
    code, out, _ = run(capsys, "--json", "releases", "show", "ml-api-v1")
    assert code == 0 and json.loads(out)["superseded_by"] == "ml-api-v2"
    code, out, _ = run(capsys, "releases", "list")
    assert code == 0 and out.splitlines()[0].startswith("RELEASE") and "ml-api-v2  live" in out


def test_unknown_id_and_missing_table_exit_cleanly(
    history: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "releases", "show", "nope")
    assert code == 3 and err.startswith("error: no release 'nope'")
    monkeypatch.delenv("RELEASES_TABLE")
    monkeypatch.delenv("TABLE_NAME")
    code, _, err = run(capsys, "releases", "list")
    assert code == 5 and "--table" in err


def test_missing_credentials_exit_cleanly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, _, err = run(capsys, "releases", "list")
    assert code == 5 and "credentials" in err.lower()
    code, _, err = run(capsys, "--profile", "ghost", "releases", "list")
    assert code == 5 and "ghost" in err


def test_rollback_refuses_never_live_without_force(history: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "rollback", "--to", "ml-api-v3", "--yes")
    assert code == 4 and "never went live" in err and history.update_calls == []


def test_rollback_asks_for_confirmation(
    history: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("builtins.input", lambda _: "n")
    code, _, err = run(capsys, "rollback", "--to", "ml-api-v1")
    assert code == 4 and "not confirmed" in err and history.update_calls == []


def test_rollback_refuses_while_endpoint_updates(history: World, capsys: pytest.CaptureFixture[str]) -> None:
    history.set_endpoint(status="Updating")
    code, _, err = run(capsys, "rollback", "--to", "ml-api-v1", "--yes")
    assert code == 4 and "Updating" in err and history.update_calls == []


def test_rollback_to_previous_release(history: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "rollback", "--to", "ml-api-v1", "--yes", "--json", "--by", "carol", "--reason", "bad predictions"
    )
    assert code == 0 and json.loads(out) == {"result": "rolled_back", "from": "ml-api-v2", "to": "ml-api-v1"}
    assert history.endpoint.endpoint_config_name == "ml-api-v1"
    v2 = history.repo.get("ml-api-v2")
    assert v2 is not None and v2.status == Status.ROLLED_BACK and "carol" in (v2.rollback_reason or "")
    assert history.status("ml-api-v1") == Status.LIVE
    code, out, _ = run(capsys, "rollback", "--to", "ml-api-v1", "--yes")
    assert code == 0 and "already on" in out and len(history.update_calls) == 1


def test_freeze_and_unfreeze(history: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "freeze", "--reason", "incident 42", "--json")
    assert code == 0 and json.loads(out)["frozen"] is True
    assert history.repo.get_freeze().by.startswith("arn:aws:")  # type: ignore[union-attr]
    code, _, _ = run(capsys, "unfreeze", "--reason", "resolved", "--by", "dave")
    assert code == 0 and not history.repo.get_freeze().frozen


def test_register_from_pipeline(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    argv = (
        "releases",
        "register",
        "ml-api-v2",
        "--model-version",
        "2",
        "--commit",
        "abc",
        "--approved-by",
        "alice",
        "--approved-by",
        "bob",
    )
    assert run(capsys, *argv)[0] == 0
    assert world.repo.get("ml-api-v2").approved_by == ["alice", "bob"]  # type: ignore[union-attr]
    code, _, err = run(capsys, *argv)
    assert code == 4 and "already registered" in err

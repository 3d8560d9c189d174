"""Process lifecycle as the image runs it: privilege drop, missing model, SIGTERM drain, usage."""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

# Starts real servers; one xdist worker shares the session server.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("model_server")]


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop only happens when started as root")


def process_uids(pid: int) -> set[int]:
    """Real, effective, saved and filesystem uid of a process."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("Uid:"))
    return {int(v) for v in line.split()[1:]}


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@needs_root
def test_serving_processes_run_as_the_unprivileged_user(server, serve_user: str) -> None:
    uid = pwd.getpwnam(serve_user).pw_uid
    workers = children(server.proc.pid)
    assert len(workers) == 2
    for pid in [server.proc.pid, *workers]:
        assert process_uids(pid) == {uid}, f"pid {pid} is not running as {serve_user}"
    started = server.events("server_starting")[0]
    assert started["user_switch"] == f"root -> {serve_user}"
    assert all(r["uid"] == uid for r in server.events("worker_listening"))


def test_missing_model_keeps_ping_503_and_logs_why(model_build, start_server) -> None:
    process = start_server(model_build.model_dir.parent / "no-such-model", workers=1)
    try:
        failure = process.wait_for("model_load_failed")[0]
        assert "metadata.json not found" in failure["reason"] and failure["level"] == "error"
        for _ in range(3):
            status, _, body = process.request("GET", "/ping")
            assert status == 503 and b"model failed to load" in body
            time.sleep(0.1)
        assert process.invoke("1,2", "text/csv")[0] == 503
    finally:
        assert process.stop() == 0


def test_ping_says_ready_only_once_every_worker_has_the_model(model_build, start_server) -> None:
    # SageMaker routes invocations once /ping answers 200: a worker still loading would answer them 503.
    process = start_server(model_build.model_dir, workers=2)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if process.request("GET", "/ping")[0] == 200:
                    break
            except OSError:  # not bound yet
                pass
            time.sleep(0.01)
        assert len(process.events("model_ready")) == 2
    finally:
        assert process.stop() == 0


def test_a_restarted_worker_takes_connections_only_once_its_model_is_loaded(
    model_build, start_server, holdout_rows
) -> None:
    process = start_server(model_build.model_dir, workers=2).wait_ready()
    try:
        victim = process.events("worker_listening")[0]
        os.kill(victim["pid"], signal.SIGKILL)
        process.wait_for("worker_listening", 3)
        records = process.log_records()
        exited = next(i for i, r in enumerate(records) if r.get("event") == "worker_exited")
        later = records[exited:]
        listening = next(i for i, r in enumerate(later) if r.get("event") == "worker_listening")
        ready = next(i for i, r in enumerate(later) if r.get("event") == "model_ready")
        assert later[listening]["worker"] == later[ready]["worker"] == victim["worker"]
        assert ready < listening, "the restarted worker took connections before its model was loaded"
        assert process.request("GET", "/ping")[0] == 200
        assert all(process.invoke({"instances": holdout_rows[:1]})[0] == 200 for _ in range(20))
    finally:
        assert process.stop() == 0


def test_sigterm_lets_in_flight_request_finish(model_build, start_server, holdout_rows) -> None:
    process = start_server(model_build.model_dir).wait_ready()
    body = json.dumps({"instances": holdout_rows[:5]}).encode()
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", process.port), timeout=10) as sock:
        sock.sendall(head + body[:10])  # request in flight: body half sent
        time.sleep(0.2)
        started = time.monotonic()
        process.proc.send_signal(signal.SIGTERM)
        process.wait_for("worker_draining", 2)
        time.sleep(0.5)
        with pytest.raises(OSError):  # no new connections once draining
            socket.create_connection(("127.0.0.1", process.port), timeout=2).close()
        sock.sendall(body[10:])
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in response
    assert len(json.loads(response.split(b"\r\n\r\n", 1)[1])["predictions"]) == 5
    assert process.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 10
    assert process.events("server_stopped")


def test_entrypoint_rejects_unknown_commands(serve_command: list[str]) -> None:
    result = subprocess.run(
        [*serve_command[:-1], "train"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2 and "usage: serve" in result.stderr


@needs_root
def test_refuses_to_serve_when_the_user_is_missing(model_build, serve_command: list[str]) -> None:
    env = {**os.environ, "SM_MODEL_DIR": str(model_build.model_dir), "MODEL_SERVER_USER": "no-such-user-here"}
    result = subprocess.run(
        serve_command, capture_output=True, text=True, timeout=30, env=env, cwd=Path(__file__).resolve().parents[2]
    )
    assert result.returncode != 0 and "does not exist; refusing to serve as root" in result.stderr


def test_crashed_worker_is_replaced(model_build, start_server) -> None:
    process = start_server(model_build.model_dir, workers=1).wait_ready()
    worker = process.events("worker_listening")[0]["pid"]
    os.kill(worker, signal.SIGKILL)
    exited = process.wait_for("worker_exited")[0]
    assert exited["pid"] == worker and exited["exit_status"] == -signal.SIGKILL
    process.wait_for("model_ready", 2)
    assert process.request("GET", "/ping")[0] == 200
    assert process.stop() == 0

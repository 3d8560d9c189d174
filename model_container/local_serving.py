"""Run the serving container's entry point as a local process, as the image would (tests, gates, benchmark)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parent / "Dockerfile"


class ServerNotReady(Exception):
    """The server exited, or /ping did not answer 200 in time; the message says what it answered last."""


def entrypoint_command(dockerfile: Path = DOCKERFILE) -> list[str]:
    """The exec-form ENTRYPOINT of the Dockerfile's `runtime` stage plus `serve`, with this interpreter as
    `python`. Only that stage's: the `train` stage has its own (SageMaker's training contract)."""
    stage, command = "", None
    for line in dockerfile.read_text().splitlines():
        if line.startswith("FROM "):
            stage = line.split()[-1] if " AS " in line.upper() else ""
        elif line.startswith("ENTRYPOINT ") and stage == "runtime":
            command = json.loads(line.removeprefix("ENTRYPOINT "))
    if command is None:
        raise ServerNotReady(f"{dockerfile} has no ENTRYPOINT in its runtime stage")
    return [sys.executable if command[0] == "python" else command[0], *command[1:], "serve"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_ping(port: int, timeout_s: float = 30, process: subprocess.Popen[bytes] | None = None) -> None:
    """Return once GET /ping answers 200; raise ServerNotReady if `process` exits or time runs out."""
    deadline, last_answer = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerNotReady(f"the server on port {port} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:  # 503 while loading, with the reason a failed load gives
            last_answer = f"{error.code} {error.read()[:500].decode(errors='replace')}"
        except OSError:
            pass
        time.sleep(0.1)
    raise ServerNotReady(f"/ping on port {port} did not answer 200 within {timeout_s:g} s; last answer: {last_answer}")

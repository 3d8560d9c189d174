"""Shared fixtures: one model build per session, and real model servers started as subprocesses."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from model_container.build_model import build
from model_container.card import ModelCard
from model_container.local_serving import entrypoint_command, free_port
from model_container.server.logs import LogWriter
from tests.model_container.task_packages import TASKS, package

REPO = Path(__file__).resolve().parents[2]
SERVE_USER = "nobody"  # an existing unprivileged user stands in for the image's model-server


@dataclass
class Build:
    dist: Path
    contract: Path
    model_dir: Path  # model.tar.gz unpacked, as SageMaker does into /opt/ml/model
    metadata: dict[str, Any]

    @property
    def card(self) -> ModelCard:
        return ModelCard.from_dict(self.metadata)


@pytest.fixture(scope="session")
def model_build() -> Iterator[Build]:
    # mkdtemp + chmod, not tmp_path: the server drops to `nobody`, who must read the model.
    root = Path(tempfile.mkdtemp(prefix="model-build-"))
    root.chmod(0o755)
    try:
        metadata = build(root / "dist", contract_dir=root / "contract", commit="test-commit")
        model_dir = root / "model"
        model_dir.mkdir()
        with tarfile.open(root / "dist" / "model.tar.gz") as archive:
            archive.extractall(model_dir, filter="data")
        yield Build(root / "dist", root / "contract", model_dir, metadata)
    finally:
        shutil.rmtree(root, ignore_errors=True)


class ServerProcess:
    """A model server started with the image's entry point; its stdout goes to a log file."""

    def __init__(self, model_dir: Path, log_dir: Path, workers: int = 2, **env: str) -> None:
        self.port, self.model_dir = free_port(), model_dir
        self.log_path = log_dir / f"server-{self.port}.log"
        environment = {
            **os.environ,
            "SM_MODEL_DIR": str(model_dir),
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "MODEL_SERVER_HOST": "127.0.0.1",
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
            "MODEL_SERVER_USER": SERVE_USER,
            "MODEL_SERVER_METRICS_INTERVAL": "1",
            **env,
        }
        self.workers = workers
        self.log_file = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            entrypoint_command(), cwd=REPO, env=environment, stdout=self.log_file, stderr=subprocess.STDOUT
        )

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                records.append({"event": "raw", "line": line})
        return records

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.log_records() if r.get("event") == name]

    def wait_for(self, event: str, count: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(event)
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {event!r} within {timeout}s:\n{self.log_path.read_text()}")

    def wait_ready(self) -> ServerProcess:
        self.wait_for("model_ready", self.workers)
        return self

    def connection(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self, method: str, path: str, body: bytes | str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def invoke(
        self, body: Any, content_type: str = "application/json", **headers: str
    ) -> tuple[int, dict[str, Any] | None]:
        payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
        status, _, data = self.request("POST", "/invocations", payload, {"Content-Type": content_type, **headers})
        return status, (json.loads(data) if data else None)

    def stop(self, timeout: float = 30) -> int:
        if self.log_file.closed:
            return self.proc.wait()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log_file.close()
        return code


@pytest.fixture
def logs() -> Iterator[LogWriter]:
    """A LogWriter on a pipe of the test's own, so request logs do not mix into pytest's output."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    yield LogWriter(fd=write_end)
    os.close(read_end)
    os.close(write_end)


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def server(model_build: Build, server_logs: Path) -> Iterator[ServerProcess]:
    """The shared server for contract, fuzz and concurrency tests (1 s receive timeout for the 408 test)."""
    process = ServerProcess(model_build.model_dir, server_logs, SAGEMAKER_MODEL_SERVER_TIMEOUT="1")
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="session")
def start_server(server_logs: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory for extra servers (lifecycle tests); each is stopped at the end if still running."""
    started: list[ServerProcess] = []

    def start(model_dir: Path, workers: int = 2, **env: str) -> ServerProcess:
        process = ServerProcess(model_dir, server_logs, workers, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def serve_command() -> list[str]:
    return entrypoint_command()


@pytest.fixture(scope="session")
def serve_user() -> str:
    return SERVE_USER


@pytest.fixture(scope="session")
def feature_schema(model_build: Build) -> dict[str, Any]:
    schema: dict[str, Any] = model_build.metadata["feature_schema"]
    return schema


@pytest.fixture(scope="session")
def holdout_rows(model_build: Build) -> list[list[float]]:
    lines = (model_build.dist / "holdout.csv").read_text().splitlines()
    return [[float(v) for v in line.split(",")[1:]] for line in lines]


@dataclass
class Package:
    """A model package of one task, unpacked where the unprivileged server user can read it."""

    kind: str  # binary | multiclass | regression
    dist: Path
    model_dir: Path
    card: ModelCard
    truth: list[float]  # holdout.csv's first column: the label or the target value
    rows: list[list[float]]  # holdout.csv's features

    @property
    def task(self) -> str:
        return self.card.task


def unpack(dist: Path, kind: str) -> Package:
    model_dir = Path(tempfile.mkdtemp(prefix=f"model-{kind}-"))
    model_dir.chmod(0o755)
    with tarfile.open(dist / "model.tar.gz") as archive:
        archive.extractall(model_dir, filter="data")
    for path in model_dir.iterdir():
        path.chmod(0o644)
    lines = [[float(v) for v in line.split(",")] for line in (dist / "holdout.csv").read_text().splitlines()]
    return Package(kind, dist, model_dir, ModelCard.load(model_dir), [r[0] for r in lines], [r[1:] for r in lines])


@pytest.fixture(scope="session")
def packages() -> Iterator[Callable[[str], Package]]:
    """kind -> its Package, each built and unpacked once a session."""
    unpacked: dict[str, Package] = {}

    def get(kind: str) -> Package:
        if kind not in unpacked:
            unpacked[kind] = unpack(package(kind), kind)
        return unpacked[kind]

    yield get
    for item in unpacked.values():
        shutil.rmtree(item.model_dir, ignore_errors=True)


@pytest.fixture(scope="session", params=list(TASKS))
def task_package(request: pytest.FixtureRequest, packages: Callable[[str], Package]) -> Package:
    """The package of each task in turn (ids binary, multiclass, regression)."""
    return packages(request.param)


@pytest.fixture(scope="session")
def task_servers(server_logs: Path) -> Iterator[Callable[[Package], ServerProcess]]:
    """One server per task's package (one worker each: the cross-task tests are about answers, not load)."""
    running: dict[str, ServerProcess] = {}

    def get(item: Package) -> ServerProcess:
        if item.kind not in running:
            running[item.kind] = ServerProcess(item.model_dir, server_logs, workers=1).wait_ready()
        return running[item.kind]

    yield get
    for process in running.values():
        process.stop()

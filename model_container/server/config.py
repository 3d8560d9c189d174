"""Server settings, read once from the environment SageMaker (or a test) provides."""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SystemExit(f"{name}={value} must be >= {minimum}")
    return value


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number") from None
    if not 0 <= value <= 1:
        raise SystemExit(f"{name}={value} must be between 0 and 1")
    return value


# Idle keep-alive connections are closed after this long. SageMaker's front end keeps connections to the
# container open and reuses them; whichever side closes an idle connection races a request the other side may be
# sending on it, and a request lost that way is a 5xx at the API. So the container should not be the side that
# closes first: 300 s is well above the 60 s invocation limit and the 60 s idle timeout AWS's load balancers use
# by default, while the connection cap (MODEL_SERVER_MAX_CONNECTIONS) keeps abandoned connections from piling up.
KEEPALIVE_TIMEOUT_S = 300
# Connections per worker; above it a new connection gets 503 too_many_connections. Each worker is its own
# process with its own descriptor table: stay below the soft RLIMIT_NOFILE, with room for the model, logs, pipes.
MAX_CONNECTIONS = 4096
RESERVED_FDS = 64


def default_max_connections() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft - RESERVED_FDS))


@dataclass(frozen=True)
class ServerConfig:
    """Everything the supervisor and workers need; see model_container/README.md for each variable."""

    host: str
    port: int
    workers: int
    timeout_s: int
    model_dir: Path
    user: str
    max_body_bytes: int
    metrics_interval_s: float
    drain_timeout_s: float
    pin_workers: bool = True
    # SageMaker Batch Transform starts the image with SAGEMAKER_BATCH=true ("Use Your Own Inference Code with Batch
    # Transform"): the server then also answers GET /execution-parameters and multi-record bodies (server/batch.py).
    batch: bool = False
    keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS
    # Fraction of successful, fast requests that get a request log line (errors and slow ones always do).
    request_log_sample: float = 1.0
    slow_request_ms: float = 100.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServerConfig:
        model_dir = env.get("SM_MODEL_DIR") or env.get("MODEL_DIR") or "/opt/ml/model"
        return cls(
            host=env.get("MODEL_SERVER_HOST", "0.0.0.0"),
            # SageMaker sets SAGEMAKER_BIND_TO_PORT in inference pipelines; tests use it for a free port.
            port=_int(env, "SAGEMAKER_BIND_TO_PORT", 8080),
            workers=_int(env, "SAGEMAKER_MODEL_SERVER_WORKERS", len(os.sched_getaffinity(0))),
            timeout_s=_int(env, "SAGEMAKER_MODEL_SERVER_TIMEOUT", 60),
            model_dir=Path(model_dir),
            user=env.get("MODEL_SERVER_USER", "model-server"),
            max_body_bytes=_int(env, "SAGEMAKER_MAX_PAYLOAD_IN_MB", 6) * 1024 * 1024,
            # Every 5 s: each 10-second period of the guard alarms gets at least one EMF record (metrics.py).
            metrics_interval_s=float(_int(env, "MODEL_SERVER_METRICS_INTERVAL", 5)),
            # SageMaker sends SIGKILL 30 s after SIGTERM; leave room to flush logs and exit.
            drain_timeout_s=float(_int(env, "MODEL_SERVER_DRAIN_TIMEOUT", 25)),
            # One worker per CPU, each pinned to its CPU and preferring connections that CPU handles (balance.py).
            pin_workers=env.get("MODEL_SERVER_PIN_WORKERS", "1").strip() != "0",
            batch=env.get("SAGEMAKER_BATCH", "").strip().lower() == "true",
            keepalive_timeout_s=float(_int(env, "MODEL_SERVER_KEEPALIVE_TIMEOUT", KEEPALIVE_TIMEOUT_S)),
            max_connections=_int(env, "MODEL_SERVER_MAX_CONNECTIONS", default_max_connections()),
            request_log_sample=_fraction(env, "MODEL_SERVER_REQUEST_LOG_SAMPLE", 1.0),
            slow_request_ms=float(_int(env, "MODEL_SERVER_SLOW_REQUEST_MS", 100)),
        )

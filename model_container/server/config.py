"""Server settings, read once from the environment SageMaker (or a test) provides."""

from __future__ import annotations

import os
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
            metrics_interval_s=float(_int(env, "MODEL_SERVER_METRICS_INTERVAL", 60)),
            # SageMaker sends SIGKILL 30 s after SIGTERM; leave room to flush logs and exit.
            drain_timeout_s=float(_int(env, "MODEL_SERVER_DRAIN_TIMEOUT", 25)),
            # One worker per CPU, each pinned to its CPU and preferring connections that CPU handles (balance.py).
            pin_workers=env.get("MODEL_SERVER_PIN_WORKERS", "1").strip() != "0",
            batch=env.get("SAGEMAKER_BATCH", "").strip().lower() == "true",
        )

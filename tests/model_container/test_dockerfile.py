"""The Dockerfile cannot be built here: lint it and check what the SageMaker contract needs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

MODEL_CONTAINER = Path(__file__).resolve().parents[2] / "model_container"
DOCKERFILE = MODEL_CONTAINER / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def test_hadolint_passes() -> None:
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sagemaker_essentials() -> None:
    text = DOCKERFILE.read_text()
    runtime = text[text.index(" AS runtime") :]  # the default (last) target; `train` has its own entry point
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", runtime, re.M).group(1))  # type: ignore[union-attr]
    assert entrypoint == ["python", "-m", "model_container.entrypoint"]  # exec form, `serve` appended by SageMaker
    assert re.search(r'^CMD \["serve"\]$', runtime, re.M)
    assert "HEALTHCHECK" in text and "EXPOSE 8080" in text
    assert "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in text  # SAGEMAKER_BIND_TO_PORT honoured
    assert re.search(r"ml\.model\.version=", text)
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M).group(1)  # type: ignore[union-attr]
    # Pinned tag, from ECR Public's Docker Official Images (tests/test_dockerfile_registries.py: no Docker Hub).
    assert re.fullmatch(r"public\.ecr\.aws/docker/library/python:3\.11\.\d+-slim-\w+", base)
    assert re.findall(r"^FROM \S+ AS (\w+)$", text, re.M) == ["build", "train", "runtime"]
    assert "useradd" in runtime and "MODEL_SERVER_USER=model-server" in text


def test_image_labels_come_from_the_model_card_build_args() -> None:
    runtime = DOCKERFILE.read_text().split(" AS runtime", 1)[1]
    for arg, label in (("MODEL_NAME", "ml.model.name"), ("MODEL_VERSION", "ml.model.version")):
        assert re.search(rf"^ARG {arg}=", runtime, re.M), arg
        assert f'{label}="${{{arg}}}"' in runtime
    assert re.search(r"^ARG MODEL_DESCRIPTION=", runtime, re.M)
    assert re.search(r'org\.opencontainers\.image\.description="[^"]*\$\{MODEL_DESCRIPTION\}"', runtime)
    # No model is named in the image recipe: the example packages are data of model_container/models.
    assert "cancer" not in DOCKERFILE.read_text().lower()


def test_the_build_stage_trains_the_configured_source_with_the_model_packages() -> None:
    text = DOCKERFILE.read_text()
    build = text[: text.index(" AS train")]
    assert re.search(r"^COPY model_container/ model_container/$", build, re.M)  # models/** included
    assert re.search(r"^ARG MODEL_SOURCE=", build, re.M) and '--source "${MODEL_SOURCE}"' in build
    ignored = (MODEL_CONTAINER / "Dockerfile.dockerignore").read_text().splitlines()
    assert not any(line.startswith("model_container/models") for line in ignored)


def test_runtime_requirements_are_exact_pins() -> None:
    for name in ("requirements.txt", "requirements-build.txt"):
        pins = [line for line in (MODEL_CONTAINER / name).read_text().splitlines() if line and line[0] not in "# "]
        assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[\w.]+", pin) for pin in pins), pins
    runtime = (MODEL_CONTAINER / "requirements.txt").read_text()
    assert "scikit-learn" not in runtime and "uvloop==" in runtime and "onnxruntime==" in runtime

"""The example model package of each task, for the container tests: built once per test process by the shared
fixture module (tests/model_packages.py), named here by task (binary, multiclass, regression)."""

from __future__ import annotations

from pathlib import Path

from model_container.card import BINARY, MULTICLASS, REGRESSION
from tests.model_packages import EXAMPLES, example_package

TASKS = {"binary": BINARY, "multiclass": MULTICLASS, "regression": REGRESSION}


def package(kind: str) -> Path:
    """The package directory (model.onnx, metadata.json, model.tar.gz, holdout.csv, ...) of a task's example.
    Shared by every test of the process: read it, never write to it."""
    return example_package(EXAMPLES[kind])

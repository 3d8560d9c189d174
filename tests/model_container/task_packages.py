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


def cycle_rows(rows: list[list[float]], count: int) -> list[list[float]]:
    """`count` rows taken from `rows` in turn: a holdout set's size is the model's (36 wine rows, 114 breast-cancer
    rows), so a test that needs N rows asks for N rather than slicing a holdout it assumes is large enough."""
    return [rows[i % len(rows)] for i in range(count)]


def csv_cells(prediction: dict[str, object]) -> list[object]:
    """A prediction object as its Batch Transform text/csv line's cells, for any task: label, probability (binary),
    one probability per class in label order (multiclass) or the value (regression), then model_version."""
    cells: list[object] = []
    for value in prediction.values():
        cells.extend(value.values() if isinstance(value, dict) else [value])  # type: ignore[union-attr]
    return cells

"""The example model packages (model_container/models), built once per test process: `example_package(name)` and
the `model_package` fixture, parametrised over the three tasks (ids binary, multiclass, regression).

Tests that must hold for any model take `model_package` and read everything they assert from its card
(model_container.card.ModelCard.load(path)): names, counts, sizes and thresholds.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from model_container.build_model import build, example_source

EXAMPLES = {"binary": "breast_cancer", "multiclass": "wine", "regression": "diabetes"}


@functools.cache
def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="model-packages-"))
    root.chmod(0o755)  # servers under test drop to an unprivileged user, who must read the packages
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


@functools.cache
def example_package(name: str) -> Path:
    """The package directory of example `name` (breast_cancer, wine, diabetes), built on first use. The feature
    contract it writes goes beside it, never to the committed model_container/contract. Do not modify it."""
    out = _root() / name
    build(out / "dist", commit="test-commit", contract_dir=out / "contract", source=example_source(name))
    return out / "dist"


@pytest.fixture(params=list(EXAMPLES.values()), ids=list(EXAMPLES))
def model_package(request: pytest.FixtureRequest) -> Path:
    """An example model package directory, one per task."""
    return example_package(request.param)


def disagreeing_labels(y: np.ndarray) -> np.ndarray:
    """Labels that disagree with `y`, of the configured model's task (cdk.json's model.source): the next class of a
    classifier (1 - y for a binary one), a regressor's target moved by half."""
    from model_container.dataset.sources import configured_classes

    classes = configured_classes()
    return (y + 1) % classes if classes else y * 1.5


def spread_rows(count: int, rows: int, step: int = 10) -> list[int]:
    """`count` row indexes `step` apart, wrapping at `rows` (a dataset may have fewer than count * step rows)."""
    return [(i * step) % rows for i in range(count)]

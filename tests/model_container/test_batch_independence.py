"""A row's prediction does not depend on the rows it is run with (model_container/server/model.py relies on it:
the transport batches requests, Batch Transform splits files into mini-batches). ONNX Runtime computes large
batches with other kernels, which moved wine's last float32 bit at 6,000 rows and more: every task's example is
checked here at a size well past that, row by row against its prediction alone."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from model_container.server.model import LoadedModel
from tests.model_container.task_packages import TASKS, cycle_rows, package

ROWS = 13_000  # past ONNX Runtime's large-batch kernels and across more than one run chunk


@pytest.mark.parametrize("kind", list(TASKS))
def test_a_large_batch_predicts_each_row_as_it_predicts_it_alone(kind: str) -> None:
    model = LoadedModel.load(package(kind))
    with (package(kind) / "holdout.csv").open() as handle:  # no header: the target, then the features in order
        holdout = [[float(cell) for cell in row[1:]] for row in csv.reader(handle)]
    # Jittered copies, so that rows are distinct inputs rather than a few repeated ones.
    rng = np.random.default_rng(7)
    base = np.asarray(cycle_rows(holdout, ROWS), dtype=np.float32)
    features = (base * rng.uniform(0.99, 1.01, size=base.shape)).astype(np.float32)
    together, labels = model.predict(features)
    alone = [model.predict(features[i : i + 1]) for i in range(ROWS)]
    assert [scores[0] for scores, _ in alone] == together
    if labels:
        assert [row_labels[0] for _, row_labels in alone] == labels

"""The serving container in Batch Transform mode, started as the image starts it, driven by a local batch driver
that speaks the Batch Transform contract (tests/model_container/batch_driver.py: split by line, MaxPayloadInMB,
MaxConcurrentTransforms, AssembleWith=Line). What SageMaker documents, and the driver therefore does, is cited there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model_container.card import BINARY, MULTICLASS, ModelCard
from tests.model_container.batch_driver import MB, BatchDriver, TransformJob, container_environment
from tests.model_container.task_packages import cycle_rows

# Real server processes; the real-time `server` fixture is shared with the other server tests of this group.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("model_server")]

# The job the batch server is started for: SageMaker sets SAGEMAKER_MAX_PAYLOAD_IN_MB=1 on the container.
JOB = TransformJob(max_payload_mb=1)


@pytest.fixture(scope="module")
def batch_server(start_server, model_build) -> Iterator[Any]:
    process = start_server(model_build.model_dir, workers=2, **container_environment(JOB))
    yield process.wait_ready()
    process.stop()


@pytest.fixture(scope="module")
def distinct_rows(holdout_rows) -> list[list[float]]:
    """At least 12,000 rows and 3.5 MB of CSV (three or more 1 MB mini-batches at any row width: 13 wine features
    make a row half as long as 30 breast-cancer ones), no two alike (holdout rows scaled by up to 4 %), so that any
    reordering shows."""

    def scaled(i: int) -> list[float]:
        return [v * (1 + (i % 401) / 10_000) for v in holdout_rows[i % len(holdout_rows)]]

    row_bytes = len(csv_file([scaled(i) for i in range(100)])) / 100
    return [scaled(i) for i in range(max(12_000, int(3.5 * MB / row_bytes)))]


def csv_file(rows: list[list[float]]) -> bytes:
    return "".join(",".join(repr(v) for v in row) + "\n" for row in rows).encode()


def realtime(server, rows: list[list[float]], cap: int | None = None) -> list[dict[str, Any]]:
    """The real-time answers for `rows`, from the real-time server, in requests of the card's row cap at most."""
    cap = cap or ModelCard.load(server.model_dir).max_batch_rows
    predictions: list[dict[str, Any]] = []
    for start in range(0, len(rows), cap):
        status, body = server.invoke({"instances": rows[start : start + cap]})
        assert status == 200
        predictions += body["predictions"]  # type: ignore[index]
    return predictions


def parse_csv_output(output: bytes, card: ModelCard) -> list[dict[str, Any]]:
    """Batch CSV lines back into the real-time objects, by the card's task."""
    lines = output.decode().split("\n")
    assert lines[-1] == "", "AssembleWith=Line output ends with a line break"
    predictions = []
    for cells in (line.split(",") for line in lines[:-1]):
        prediction: dict[str, Any]
        if card.task == BINARY:
            prediction = {"label": int(cells[0]), "probability": float(cells[1])}
        elif card.task == MULTICLASS:
            probabilities = dict(zip(card.label_names, map(float, cells[1:-1]), strict=True))
            prediction = {"label": int(cells[0]), "probabilities": probabilities}
        else:
            prediction = {"value": float(cells[0])}
        predictions.append(prediction | {"model_version": cells[-1]})
    return predictions


def test_the_driver_takes_the_containers_execution_parameters_where_the_job_sets_none(batch_server) -> None:
    status, _, body = batch_server.request("GET", "/execution-parameters")
    assert (status, json.loads(body)) == (
        200,
        {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 1},
    )
    settings = BatchDriver(batch_server.port, TransformJob()).settings
    assert (settings.max_concurrent_transforms, settings.batch_strategy, settings.max_payload_mb) == (
        2,
        "MultiRecord",
        1,
    )
    job_wins = BatchDriver(batch_server.port, TransformJob(max_concurrent_transforms=5, batch_strategy="SingleRecord"))
    assert (job_wins.settings.max_concurrent_transforms, job_wins.settings.batch_strategy) == (5, "SingleRecord")


def test_csv_file_in_concurrent_mini_batches_equals_the_realtime_predictions_in_order(
    batch_server, server, distinct_rows, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "scores.csv").write_bytes(csv_file(distinct_rows))
    driver = BatchDriver(batch_server.port, TransformJob(max_payload_mb=1, max_concurrent_transforms=4))
    result = driver.run(tmp_path / "in", tmp_path / "out")
    assert result.status == "Completed", result.failure_reason
    [sent] = result.files
    assert len(sent.mini_batch_records) >= 3 and sum(sent.mini_batch_records) == len(distinct_rows)
    assert sent.max_in_flight > 1, "the mini-batches were really sent concurrently"
    output = (tmp_path / "out" / "scores.csv.out").read_bytes()
    assert parse_csv_output(output, ModelCard.load(server.model_dir)) == realtime(server, distinct_rows)


def test_jsonlines_file_single_record_strategy(batch_server, server, holdout_rows, feature_schema) -> None:
    names = [f["name"] for f in feature_schema["features"]]
    rows = cycle_rows(holdout_rows, 40)
    data = b"".join(
        json.dumps(dict(zip(names, row, strict=True)) if i % 3 else row).encode() + b"\n" for i, row in enumerate(rows)
    )
    job = TransformJob(content_type="application/jsonlines", batch_strategy="SingleRecord", max_concurrent_transforms=3)
    result = BatchDriver(batch_server.port, job).transform_data("rows.jsonl", data)
    assert result.error is None and result.requests == len(rows)
    assert [json.loads(line) for line in result.output.splitlines()] == realtime(server, rows)  # type: ignore[union-attr]


def padded_record(row: list[float], size: int) -> bytes:
    """A valid CSV record (newline included) of exactly `size` bytes: the first value padded with spaces."""
    text = ",".join(repr(v) for v in row)
    assert len(text) < size
    return (" " * (size - len(text) - 1) + text + "\n").encode()


def test_mini_batches_fill_max_payload_exactly_and_the_container_takes_that_size(batch_server, holdout_rows) -> None:
    half = MB // 2
    exactly_one_mb = padded_record(holdout_rows[0], half) + padded_record(holdout_rows[1], half)
    driver = BatchDriver(batch_server.port, TransformJob(max_payload_mb=1))
    assert [len(body) for _, body in driver.mini_batches(exactly_one_mb)] == [MB]
    one_record_more = exactly_one_mb + padded_record(holdout_rows[2], 300)
    assert [len(body) for _, body in driver.mini_batches(one_record_more)] == [MB, 300]
    result = driver.transform_data("edge.csv", one_record_more)
    assert result.error is None and result.requests == 2 and result.output is not None
    assert len(result.output.splitlines()) == 3
    # The container's own limit is the job's MaxPayloadInMB: one byte over is refused before the body is read.
    status, _, body = batch_server.request("POST", "/invocations", exactly_one_mb + b" ", {"Content-Type": "text/csv"})
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"


def test_a_record_over_max_payload_fails_its_file_and_the_job_goes_on(
    batch_server, holdout_rows, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    good = csv_file(holdout_rows[:10])
    (tmp_path / "in" / "a-too-big.csv").write_bytes(good + padded_record(holdout_rows[0], MB + 1) + good)
    (tmp_path / "in" / "b-good.csv").write_bytes(good)
    result = BatchDriver(batch_server.port, TransformJob(max_payload_mb=1)).run(tmp_path / "in", tmp_path / "out")
    assert result.status == "Failed"
    too_big, fine = result.files
    assert too_big.requests == 0 and too_big.output is None
    assert too_big.error == f"record at line 11 has {MB + 1} bytes, over MaxPayloadInMB=1"
    assert fine.error is None
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b-good.csv.out"]


def test_a_malformed_line_fails_its_file_with_the_line_named(batch_server, distinct_rows, tmp_path: Path) -> None:
    driver = BatchDriver(batch_server.port, TransformJob(max_payload_mb=1, max_concurrent_transforms=2))
    _, first_batch = next(driver.mini_batches(csv_file(distinct_rows)))
    bad_line = first_batch.count(b"\n") + 1500  # 1-based, in the second or a later mini-batch of 1 MB
    lines = csv_file(distinct_rows[: bad_line + 2700]).decode().splitlines()
    lines[bad_line - 1] = lines[bad_line - 1].replace(",", ";", 1)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "in" / "fine.csv").write_bytes(csv_file(distinct_rows[:5]))
    result = driver.run(tmp_path / "in", tmp_path / "out")
    assert result.status == "Failed"
    broken = result.files[0]
    assert broken.output is None and broken.error is not None
    first_line, _, answer = broken.error.removeprefix("mini-batch from line ").partition(": 400 ")
    error = json.loads(answer)["error"]
    assert int(first_line) > 1, "the bad record is not in the first mini-batch"
    assert error["code"] == "wrong_type" and error["message"].startswith(f"line {error['line']} ")
    assert int(first_line) + error["line"] - 1 == bad_line
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["fine.csv.out"]


def test_each_tasks_batch_output_is_its_realtime_answers_in_order(
    task_package, task_servers, start_server, tmp_path: Path
) -> None:
    """Per task: a CSV file through the driver in concurrent mini-batches gives the task's CSV lines, line i the
    real-time answer to input line i; JSON Lines output gives the real-time objects."""
    process = start_server(task_package.model_dir, workers=1, **container_environment(JOB)).wait_ready()
    try:
        rows = [
            [v * (1 + (i % 97) / 10_000) for v in task_package.rows[i % len(task_package.rows)]] for i in range(3000)
        ]
        job = TransformJob(max_payload_mb=1, max_concurrent_transforms=2)
        result = BatchDriver(process.port, job).transform_data("rows.csv", csv_file(rows))
        assert result.error is None and result.output is not None
        expected = realtime(task_servers(task_package), rows, task_package.card.max_batch_rows)
        assert parse_csv_output(result.output, task_package.card) == expected
        lines_job = TransformJob(content_type="text/csv", accept="application/jsonlines", max_payload_mb=1)
        as_lines = BatchDriver(process.port, lines_job).transform_data("rows.csv", csv_file(rows[:50]))
        assert [json.loads(line) for line in as_lines.output.splitlines()] == expected[:50]  # type: ignore[union-attr]
    finally:
        process.stop()

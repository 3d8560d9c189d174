"""Parse SageMaker data-capture JSON Lines records and group their rows by serving model version."""

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from drift_engine.payload_decoding import (
    Instance,
    MalformedPayload,
    Prediction,
    decode_instances,
    decode_predictions,
    loads,
)

UNKNOWN_VERSION = "unknown"
# The API gives the delivery pipeline's smoke and load tests (their own API key) an inference id with this prefix;
# SageMaker writes it to the capture record's eventMetadata.inferenceId (InvokeEndpoint: InferenceId "is added to
# the captured data"). Such records are test traffic: counted, never part of drift statistics or training data.
TEST_INFERENCE_ID_PREFIX = "pipeline-test-"
MAX_MALFORMED_SAMPLES = 10
# The version becomes part of S3 keys and metric dimensions: anything else is grouped as unknown.
_SAFE_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


@dataclass(frozen=True)
class CapturedRow:
    """One instance of a captured request with the prediction the model returned for it."""

    instance: Instance
    prediction: Prediction | None
    join_key: str | None


@dataclass
class CaptureStats:
    """Counts of a window's capture lines: records read, test traffic, malformed lines with reasons and samples."""

    records: int = 0
    total_rows: int = 0  # rows (instances) of the well-formed records that are not test traffic
    test_traffic_records: int = 0
    malformed_records: int = 0
    malformed_reasons: Counter[str] = field(default_factory=Counter)
    malformed_samples: list[dict[str, str]] = field(default_factory=list)

    def record_malformed(self, source: str, reason: str) -> None:
        self.malformed_records += 1
        self.malformed_reasons[reason.split(":")[0]] += 1
        if len(self.malformed_samples) < MAX_MALFORMED_SAMPLES:
            self.malformed_samples.append({"source": source, "reason": reason[:300]})


@dataclass
class CaptureBatch(CaptureStats):
    """Rows of a window grouped by model version, plus the counts (for tests and small windows: the job itself
    streams, see drift_engine.streaming)."""

    rows_by_version: dict[str, list[CapturedRow]] = field(default_factory=lambda: defaultdict(list))


def load_capture_record(line: str) -> dict[str, Any]:
    """One JSON Lines capture line -> the record; raises MalformedPayload unless it is an object with captureData."""
    try:
        record = loads(line)
    except json.JSONDecodeError as error:
        raise MalformedPayload(f"bad json line: {error.msg}") from error
    except RecursionError as error:  # json.loads recurses once per nesting level: a hostile line must not abort
        raise MalformedPayload("bad json line: nested too deeply") from error
    if not isinstance(record, dict) or not isinstance(record.get("captureData"), dict):
        raise MalformedPayload("missing captureData")
    metadata = record.get("eventMetadata")
    if metadata is not None and not isinstance(metadata, dict):
        # SageMaker writes an object (eventId, inferenceId, inferenceTime): anything else is a damaged record.
        raise MalformedPayload(f"bad eventMetadata: {type(metadata).__name__}, not an object")
    return record


def is_test_traffic(record: dict[str, Any], prefix: str = TEST_INFERENCE_ID_PREFIX) -> bool:
    """True for a request the API marked as the pipeline's test traffic (see TEST_INFERENCE_ID_PREFIX)."""
    metadata = record.get("eventMetadata")
    inference_id = metadata.get("inferenceId") if isinstance(metadata, dict) else None
    return bool(prefix) and isinstance(inference_id, str) and inference_id.startswith(prefix)


def parse_capture_line(line: str) -> list[CapturedRow]:
    """One JSON Lines capture record -> rows; raises MalformedPayload on any structural problem."""
    return capture_rows(load_capture_record(line))


def _join_key(metadata: Any) -> str | None:
    if not isinstance(metadata, dict):
        return None
    # SageMaker joins ground truth on inferenceId when the caller set one, else on eventId.
    key = metadata.get("inferenceId") or metadata.get("eventId")
    return key if isinstance(key, str) else None


def capture_rows(record: dict[str, Any]) -> list[CapturedRow]:
    """A loaded capture record -> rows; raises MalformedPayload on any structural problem."""
    capture = record["captureData"]
    if not isinstance(capture.get("endpointInput"), dict):
        raise MalformedPayload("missing endpointInput")
    instances = decode_instances(capture["endpointInput"])
    predictions: list[Prediction | None] = [None] * len(instances)
    if isinstance(capture.get("endpointOutput"), dict):
        decoded = decode_predictions(capture["endpointOutput"])
        if len(decoded) != len(instances):
            raise MalformedPayload(f"count mismatch: {len(instances)} instances, {len(decoded)} predictions")
        predictions = list(decoded)
    join_key = _join_key(record.get("eventMetadata"))
    return [
        CapturedRow(instance, prediction, join_key) for instance, prediction in zip(instances, predictions, strict=True)
    ]


def row_version(row: CapturedRow) -> str:
    """The serving version of a row, or `unknown` when the response had none or one unfit for S3 keys."""
    version = row.prediction.model_version if row.prediction else None
    return version if version and _SAFE_VERSION.match(version) else UNKNOWN_VERSION


# Whatever a damaged line makes the decoders raise beyond MalformedPayload: counted as malformed, never fatal.
_DATA_ERRORS = (ArithmeticError, LookupError, TypeError, ValueError, AttributeError, RecursionError)


def iter_capture_records(
    lines: Iterable[tuple[str, str]],
    stats: CaptureStats,
    test_prefix: str = TEST_INFERENCE_ID_PREFIX,
    check: Callable[[list[CapturedRow]], None] | None = None,
) -> Iterator[list[CapturedRow]]:
    """(source, line) pairs -> the rows of each well-formed record, one record at a time; `stats` counts the rest.
    Malformed lines are counted (reason and sample), never fatal; test traffic (inference id starting with
    `test_prefix`) is counted and left out. `check` may refuse a record's rows with MalformedPayload (the drift
    job: a response that does not fit its model's task), which counts the record as malformed too."""
    for source, line in lines:
        if not line.strip():
            continue
        stats.records += 1
        try:
            record = load_capture_record(line)
            if is_test_traffic(record, test_prefix):
                stats.test_traffic_records += 1
                continue
            rows = capture_rows(record)
            if check is not None:
                check(rows)
        except MalformedPayload as error:
            stats.record_malformed(source, str(error))
            continue
        except _DATA_ERRORS as error:
            stats.record_malformed(source, f"unreadable record: {type(error).__name__}: {error}")
            continue
        stats.total_rows += len(rows)
        yield rows


def group_capture_lines(lines: Iterable[tuple[str, str]], test_prefix: str = TEST_INFERENCE_ID_PREFIX) -> CaptureBatch:
    """(source, line) pairs -> CaptureBatch (every row held in memory: for tests and small windows)."""
    batch = CaptureBatch()
    for rows in iter_capture_records(lines, batch, test_prefix):
        for row in rows:
            batch.rows_by_version[row_version(row)].append(row)
    return batch

"""Property tests (hypothesis): whatever a capture or label line holds, reading it never raises, and every line is
accounted for (issue 14, "Malformed input is data, not a crash")."""

from __future__ import annotations

import json
import math
from typing import Any

from drift_engine.capture_records import group_capture_lines
from drift_engine.ground_truth import parse_label_lines
from drift_test_data import WIDTH, capture_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROW = [float(i) for i in range(WIDTH)]
TEMPLATE = json.loads(capture_line([ROW, ROW], [0.9, 0.2], "1.0.0", inference_id="inf-1"))

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# The places of a capture record a damaged or hostile producer may fill with anything.
PATHS = [
    ("eventMetadata",),
    ("eventMetadata", "inferenceId"),
    ("eventMetadata", "eventId"),
    ("captureData",),
    ("captureData", "endpointInput"),
    ("captureData", "endpointInput", "data"),
    ("captureData", "endpointInput", "encoding"),
    ("captureData", "endpointInput", "observedContentType"),
    ("captureData", "endpointOutput"),
    ("captureData", "endpointOutput", "data"),
    ("captureData", "endpointOutput", "encoding"),
]
OUTPUT_TEXTS = st.sampled_from(
    [
        '{"predictions": [{"label": 1e999, "probability": 0.9}, {"label": 0, "probability": 0.2}]}',
        '{"predictions": [{"label": "x"}, {"label": null, "probability": "NaN"}]}',
        '{"predictions": [1e999, -1e999]}',
        '{"predictions": [[1], {"model_version": []}]}',
        '{"predictions": {"label": 1}}',
        '{"model_version": {"a": 1}, "predictions": [0.1, 0.2]}',
        "inf,0.9\n-inf,0.2",
        "1,0.9,1.0.0,extra\n0,0.2",
        "[" * 5000 + "]" * 5000,
    ]
)


def _replace(record: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(record))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, allow_nan=True)


@st.composite
def capture_lines(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["field", "output", "text", "json"]))
    if kind == "field":
        return _line(_replace(TEMPLATE, draw(st.sampled_from(PATHS)), draw(JSON_VALUES)))
    if kind == "output":
        return _line(_replace(TEMPLATE, ("captureData", "endpointOutput", "data"), draw(OUTPUT_TEXTS)))
    if kind == "json":
        return _line(draw(JSON_VALUES))  # type: ignore[arg-type]
    return draw(st.text(max_size=60))


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(capture_lines(), min_size=1, max_size=6))
def test_no_capture_line_raises_and_every_line_is_accounted_for(lines: list[str]) -> None:
    good = capture_line([ROW], [0.7], "1.0.0")
    batch = group_capture_lines([(f"f:{i}", line) for i, line in enumerate([good, *lines, good])])
    parsed = sum(len(rows) for rows in batch.rows_by_version.values())
    assert parsed == batch.total_rows >= 2  # the good lines around the bad ones are still read
    assert batch.malformed_records == sum(batch.malformed_reasons.values())
    assert len(batch.malformed_samples) == min(batch.malformed_records, 10)
    assert batch.records >= batch.malformed_records + batch.test_traffic_records + 2


LABEL_VALUES = JSON_VALUES | st.sampled_from(["inf", "-inf", "nan", "1e999", "1,inf", "\n", "0,1"])


@st.composite
def label_lines(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["simple", "sagemaker", "text", "json"]))
    if kind == "simple":
        key = draw(st.sampled_from(["label", "labels"]))
        return _line({"inferenceId": draw(JSON_VALUES | st.just("id")), key: draw(LABEL_VALUES)})
    if kind == "sagemaker":
        truth = draw(st.just({"data": draw(LABEL_VALUES)}) | JSON_VALUES)
        return _line({"groundTruthData": truth, "eventMetadata": draw(st.just({"eventId": "e"}) | JSON_VALUES)})
    if kind == "json":
        return _line(draw(JSON_VALUES))  # type: ignore[arg-type]
    return draw(st.text(max_size=40))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(label_lines(), min_size=1, max_size=6))
def test_no_label_line_raises_and_labels_are_finite_numbers(lines: list[str]) -> None:
    labels = parse_label_lines([(f"g:{i}", line) for i, line in enumerate(lines)])
    assert labels.malformed_lines + len(labels.labels) <= len([line for line in lines if line.strip()])
    # A class index is an int; a regression target may be any finite float (issue 16), never NaN or infinite.
    values = [label for values in labels.labels.values() for label in values]
    assert all(type(label) is int or (type(label) is float and math.isfinite(label)) for label in values)
    assert all(type(label) is int for label in values if float(label).is_integer())

"""FeatureValidator: JSON and CSV parsing, and errors that name the row and field."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_container.card import ModelCard
from model_container.server import validation
from model_container.server.validation import FeatureValidator, RequestError
from tests.model_container.task_packages import package

# The default package's card: every name, count and bound below is read from it.
SCHEMA = ModelCard.load(package("binary")).feature_schema
VALIDATOR = FeatureValidator(SCHEMA)
NAMES, WIDTH = VALIDATOR.names, VALIDATOR.width
MID = [round((f["training_min"] + f["training_max"]) / 2, 4) for f in SCHEMA["features"]]
CSV_ROW = ",".join(str(v) for v in MID)


def with_cell(column: int, text: str) -> str:
    """CSV_ROW with one cell's text replaced."""
    cells = CSV_ROW.split(",")
    cells[column] = text
    return ",".join(cells)


def error_of(call: Any, body: bytes) -> RequestError:
    with pytest.raises(RequestError) as info:
        call(body)
    assert info.value.status == 400
    return info.value


def test_json_rows_become_float32_matrix() -> None:
    matrix = VALIDATOR.from_json(json.dumps({"instances": [MID, MID]}).encode())
    assert matrix.dtype == np.float32 and matrix.shape == (2, WIDTH)
    assert np.allclose(matrix[0], MID)


def test_object_rows_are_put_in_schema_order() -> None:
    reversed_row = dict(reversed(list(zip(VALIDATOR.names, MID, strict=True))))
    matrix = VALIDATOR.from_json(json.dumps({"instances": [reversed_row]}).encode())
    assert np.allclose(matrix[0], MID)


def test_csv_with_crlf_bom_and_spaces() -> None:
    body = b"\xef\xbb\xbf" + (CSV_ROW + "\r\n" + CSV_ROW.replace(",", ", ") + "\r\n").encode()
    assert VALIDATOR.from_csv(body).shape == (2, WIDTH)


@pytest.mark.parametrize(
    ("body", "code", "row", "field"),
    [
        (f"{CSV_ROW}\n{CSV_ROW},1\n", "wrong_feature_count", 1, None),
        (f"{CSV_ROW}\n\n", "wrong_feature_count", 1, None),
        ("", "empty_batch", None, "instances"),
        (",".join(NAMES) + "\n", "wrong_type", 0, NAMES[0]),
        (with_cell(2, "nan"), "wrong_type", 0, NAMES[2]),
        (with_cell(2, "inf"), "wrong_type", 0, NAMES[2]),
        (with_cell(2, "1_0"), "wrong_type", 0, NAMES[2]),
        (with_cell(2, "1-2"), "wrong_type", 0, NAMES[2]),
        (with_cell(2, '"1"'), "wrong_type", 0, NAMES[2]),
        (with_cell(2, ""), "wrong_type", 0, NAMES[2]),
        (CSV_ROW + "\n" + with_cell(3, "1e300"), "out_of_range", 1, NAMES[3]),
    ],
)
def test_csv_errors(body: str, code: str, row: int | None, field: str | None) -> None:
    error = error_of(VALIDATOR.from_csv, body.encode())
    assert (error.code, error.row, error.field) == (code, row, field)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "malformed_json"),
        (b"{", "malformed_json"),
        (b'{"instances": [[NaN]]}', "malformed_json"),
        (b'{"instances": [[1e400]]}', "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"null", "invalid_body"),
    ],
)
def test_malformed_json(body: bytes, code: str) -> None:
    assert error_of(VALIDATOR.from_json, body).code == code


def test_error_body_names_row_and_field() -> None:
    row = list(MID)
    row[4] = True
    error = error_of(VALIDATOR.from_json, json.dumps({"instances": [MID, row]}).encode())
    assert error.body("req-1") == {
        "error": {
            "code": "wrong_type",
            "request_id": "req-1",
            "row": 1,
            "field": NAMES[4],
            "message": f"row 1 feature {NAMES[4]!r} must be a number, got boolean",
        }
    }


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=35) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=80,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_any_json_document_is_accepted_or_refused_cleanly(document: Any) -> None:
    for body in (json.dumps(document).encode(), json.dumps({"instances": document}).encode()):
        try:
            matrix = VALIDATOR.from_json(body)
        except RequestError as error:
            assert error.status == 400
        else:
            assert matrix.shape[1] == WIDTH and np.isfinite(matrix).all()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(alphabet="0123456789.,-+eE \r\n", max_size=400).map(str.encode))
def test_any_csv_body_is_accepted_or_refused_cleanly(body: bytes) -> None:
    try:
        matrix = VALIDATOR.from_csv(body)
    except RequestError as error:
        assert error.status == 400
    else:
        assert matrix.shape[1] == WIDTH


def _outcome(call: Any, body: bytes) -> tuple[Any, ...]:
    try:
        matrix = call(body)
    except RequestError as error:
        return ("error", error.code, error.message, error.row, error.field)
    return ("ok", matrix.dtype.str, matrix.shape, matrix.tobytes())


def _row(draw: st.DrawFn) -> list[Any]:
    """A valid row with at most one value moved to (or just past) a bound, or of the wrong type."""
    features = SCHEMA["features"]
    row: list[Any] = [draw(st.floats(f["minimum"], f["maximum"])) for f in features]
    column = draw(st.integers(0, len(row) - 1))
    low, high = features[column]["minimum"], features[column]["maximum"]
    row[column] = draw(
        st.sampled_from([low, high, int(high), int(high) + 1, True, None, "1"])
        | st.floats(high, high * 1.001 + 1e-9)
        | st.floats(low - 1e-9, low)
        | st.floats(low, high)
    )
    return row


ROWS = st.lists(st.composite(_row)(), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(ROWS, st.booleans())
def test_small_batch_fast_path_agrees_with_full_checks(rows: list[list[Any]], as_objects: bool) -> None:
    """Few-row requests skip numpy; the result (matrix bytes or exact error) must not change."""
    instances: list[Any] = [dict(zip(VALIDATOR.names, row, strict=True)) for row in rows] if as_objects else rows
    bodies = [(VALIDATOR.from_json, json.dumps({"instances": instances}).encode())]
    if all(type(value) in (int, float) for row in rows for value in row):
        bodies.append((VALIDATOR.from_csv, "\n".join(",".join(repr(v) for v in row) for row in rows).encode()))
    for call, body in bodies:
        fast = _outcome(call, body)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(validation, "FAST_PATH_ROWS", 0)
            full = _outcome(call, body)
        assert fast == full


# --- Issue 15: array-form rows through simdjson's buffer (validation.BULK_PATH_ROWS rows and more) ---------------
def _orjson_only(call: Any, body: bytes) -> tuple[Any, ...]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validation, "simdjson", None)
        return _outcome(call, body)


def _bulk_body(rows: list[list[Any]]) -> bytes:
    return json.dumps({"instances": rows}).encode()


def test_the_container_runtime_pin_is_installed_so_the_bulk_path_runs() -> None:
    # model_container/requirements.txt pins pysimdjson; an environment without it serves every body through orjson.
    assert validation.simdjson is not None, "pysimdjson missing: install model_container/requirements.txt"


def test_a_valid_100_row_body_takes_the_bulk_path(monkeypatch: pytest.MonkeyPatch) -> None:
    body = _bulk_body([MID] * 100)
    expected = VALIDATOR.from_json(body)

    def no_orjson(_: bytes) -> Any:
        raise AssertionError("a valid array-form body went through orjson")

    monkeypatch.setattr(validation.orjson, "loads", no_orjson)
    matrix = VALIDATOR.from_json(body)
    assert matrix.dtype == np.float32 and matrix.shape == (100, WIDTH) and matrix.tobytes() == expected.tobytes()


ROW = ", ".join(repr(v) for v in MID)
ROWS_TEXT = ", ".join(f"[{ROW}]" for _ in range(6))
TOKENS = ("-0", "-0.0", "0e0", "1.", "01", "+1", ".5", "1e", "-", "0x1", "NaN", "Infinity", "true", "null", '"1"')
BIG_TOKENS = ("1e400", "-1e400", "1e-400", "18446744073709551616", "-9223372036854775809", "9007199254740993")
EDGE_BODIES = [
    b"\xef\xbb\xbf" + _bulk_body([MID] * 6),  # simdjson skips a BOM, orjson refuses it
    f'{{"instances": [{ROWS_TEXT}], "instances": [{ROWS_TEXT}]}}'.encode(),  # a repeated key
    f'{{"instances": [{ROWS_TEXT}], "extra": 1}}'.encode(),
    f'{{"instances": [{ROWS_TEXT}]}} x'.encode(),
    f'{{"instances": [{ROWS_TEXT}],}}'.encode(),
    f'{{"instanc\\u0065s": [{ROWS_TEXT}]}}'.encode(),  # the same key, escaped
    f'{{"instances": [{ROWS_TEXT}, [{ROW}, 1]]}}'.encode(),  # a row too long
    f'{{"instances": [{ROWS_TEXT}, {{"a": 1}}]}}'.encode(),
    f'{{"instances": [{ROWS_TEXT}, 5]}}'.encode(),
    _bulk_body([MID] * 5 + [[*MID[:-1], []]]),
    _bulk_body([MID] * 5 + [[*MID[:-1], [MID[-1]]]]),  # a nested one-value array keeps the value count
    _bulk_body([MID] * 10001),
    *(f'{{"instances": [{ROWS_TEXT}, [{token}, {ROW.split(", ", 1)[1]}]]}}'.encode() for token in TOKENS + BIG_TOKENS),
]


@pytest.mark.parametrize("body", EDGE_BODIES)
def test_bulk_path_accepts_and_refuses_exactly_what_the_orjson_path_does(body: bytes) -> None:
    assert _outcome(VALIDATOR.from_json, body) == _orjson_only(VALIDATOR.from_json, body)


VALUE = re.compile(r"-?\d[\d.eE+\-]*|true|false|null|\"1\"")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.composite(_row)(), min_size=validation.BULK_PATH_ROWS, max_size=12),
    st.text(alphabet="0123456789.-+eE", min_size=1, max_size=8),
    st.integers(min_value=0),
)
def test_bulk_path_agrees_with_the_orjson_path(rows: list[list[Any]], token: str, position: int) -> None:
    """Result (matrix bytes) or exact error identical, for rows near the bounds, of wrong types, and with one value
    replaced by a number-like token the JSON grammar may refuse."""
    body = _bulk_body(rows)
    assert _outcome(VALIDATOR.from_json, body) == _orjson_only(VALIDATOR.from_json, body)
    values = list(VALUE.finditer(body.decode()))
    value = values[position % len(values)]
    tampered = body[: value.start()] + token.encode() + body[value.end() :]
    assert _outcome(VALIDATOR.from_json, tampered) == _orjson_only(VALIDATOR.from_json, tampered)

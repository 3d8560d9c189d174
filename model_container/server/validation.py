"""Strict request parsing: JSON and CSV bodies into a float32 feature matrix.

Every rule comes from the model card's feature_schema (metadata.json in the model package: feature names, order
and ranges, max_batch_rows), the same source as the API Gateway request model; errors name the card's features.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from itertools import chain
from operator import itemgetter, le
from typing import Any

import numpy as np
import orjson

try:  # pysimdjson (model_container/requirements.txt): array-form rows straight into a float64 buffer
    import simdjson
except ImportError:  # a checkout whose environment predates the pin: every body takes the orjson path
    simdjson = None  # type: ignore[assignment]

NUMBER_TYPES = frozenset((int, float))  # exact types: bool is an int subclass and is rejected
# Only what a plain decimal CSV can contain; anything else (quotes, letters, nan/inf, "1_0") is refused
# before float() gets a chance to be lenient about it.
CSV_ALLOWED = re.compile(rb"[0-9eE+\-., \t\r\n]*")
UTF8_BOM = b"\xef\xbb\xbf"
# Up to this many rows, valid requests are checked value by value in Python and go straight to float32:
# numpy's per-call overhead (several µs per array operation) outweighs its speed on a few dozen values.
# Anything the fast path does not accept is handed to the full checks, which produce the exact error.
FAST_PATH_ROWS = 4
# From this many array-form rows, the body is parsed by simdjson and its numbers copied into one float64 buffer
# (Array.as_buffer) without a Python object per value: a 100-row body took ~470 µs through orjson, lists and
# per-value type checks, ~100 µs this way (model_container/README.md, "Where a 100-row request's time goes").
# Anything it does not accept goes to the orjson path, which accepts exactly what it did before and names the error.
BULK_PATH_ROWS = FAST_PATH_ROWS + 1
# Below this size bytes.count is cheaper than a numpy pass (numpy's fixed cost is a few µs).
NUMPY_COUNT_BYTES = 4096


class RequestError(Exception):
    """A client error with the HTTP status and the JSON error body fields it maps to."""

    def __init__(self, status: int, code: str, message: str, row: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.row, self.field = status, code, message, row, field

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "request_id": request_id}
        if self.row is not None:
            error["row"] = self.row
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


def bad(code: str, message: str, row: int | None = None, field: str | None = None) -> RequestError:
    return RequestError(400, code, message, row, field)


class FeatureValidator:
    """Validates request bodies against the feature schema and returns model-ready float32 rows."""

    def __init__(self, feature_schema: dict[str, Any]) -> None:
        features = feature_schema["features"]
        self.names: list[str] = [f["name"] for f in features]
        self.name_set = frozenset(self.names)
        self.width = len(self.names)
        self.minimum = np.array([f["minimum"] for f in features], dtype=np.float64)
        self.maximum = np.array([f["maximum"] for f in features], dtype=np.float64)
        self.max_rows: int = feature_schema["max_batch_rows"]
        self._minimum_list: list[float] = self.minimum.tolist()
        self._maximum_list: list[float] = self.maximum.tolist()
        self._in_schema_order = itemgetter(*self.names)

    # --- JSON -------------------------------------------------------------------------------
    def from_json(self, body: bytes) -> np.ndarray:
        # Each row of a valid body opens one array or object, and the body one more of each: a body with more
        # openers than that cannot be valid, and is refused before parsing (6 MB of `[],` would otherwise build
        # two million lists, ~185 MiB and half a second of the worker's loop, only to fail the row count).
        arrays, objects = _openers(body)
        if arrays + objects > self.max_rows + 2:
            raise bad(
                "too_many_rows",
                f"body holds more than {self.max_rows} rows (or nested arrays or objects)",
                field="instances",
            )
        if objects == 1 and arrays > BULK_PATH_ROWS and simdjson is not None:
            matrix = self._bulk_array_rows(body, arrays - 1)
            if matrix is not None:
                return matrix
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise bad("malformed_json", f"body is not valid JSON: {exc}") from None
        matrix = self.from_document(document)
        self._check_unique_keys(body, document)
        return matrix

    def _bulk_array_rows(self, body: bytes, rows: int) -> np.ndarray | None:
        """The float32 matrix of a valid `{"instances": [[...], ...]}` body of `rows` rows, else None.

        The caller counted one object and rows + 1 arrays in the body, and every row here is an array of `width`
        values: so no row holds a nested array, and as_buffer's flattening is exactly the rows in order. as_buffer
        refuses any value that is not a number (bool, null, string, object: TypeError). simdjson validates the
        whole document (RFC 8259 grammar and UTF-8) but, unlike orjson, skips a leading UTF-8 BOM: such a body
        takes the orjson path, which refuses it."""
        if rows > self.max_rows or body.startswith(UTF8_BOM):
            return None
        width = self.width
        try:
            # A parser per body: nothing to reuse wrongly, and no buffer sized to the largest body kept alive.
            document = simdjson.Parser().parse(body)
            if type(document) is not simdjson.Object or len(document) != 1:  # len counts a repeated key twice
                return None
            instances = document.get("instances")
            if type(instances) is not simdjson.Array or len(instances) != rows:
                return None
            for row in instances:
                if type(row) is not simdjson.Array or len(row) != width:
                    return None
            flat = np.frombuffer(instances.as_buffer(of_type="d"), dtype=np.float64)
        except Exception:  # malformed JSON, a non-number value, a number out of double range: the orjson path says
            return None
        if flat.size != rows * width:
            return None
        matrix = flat.reshape(rows, width)
        # Comparisons with NaN are false (as_buffer yields none: JSON has no NaN); out of range: the orjson path.
        if (matrix >= self.minimum).all() and (matrix <= self.maximum).all():
            return matrix.astype(np.float32)
        return None

    def _check_unique_keys(self, body: bytes, document: dict[str, Any]) -> None:
        """orjson keeps the last of duplicate keys silently; refuse them (RFC 8259: names SHOULD be unique).

        A valid body holds numbers only, so every '"' delimits a key: two per key. More quotes than the parsed
        keys account for means a key was repeated; only then is the body parsed again to name it."""
        keys = len(document) + sum(len(row) for row in document["instances"] if type(row) is dict)
        if body.count(b'"') == 2 * keys:
            return
        duplicate: list[str] = []

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            seen: set[str] = set()
            for key, _ in items:
                if key in seen and not duplicate:
                    duplicate.append(key)
                seen.add(key)
            return dict(items)

        json.loads(body, object_pairs_hook=pairs)
        if duplicate:
            raise bad("duplicate_key", f"key {duplicate[0]!r} appears more than once in an object", field=duplicate[0])

    def from_document(self, document: Any) -> np.ndarray:
        if type(document) is not dict:
            raise bad("invalid_body", 'body must be a JSON object {"instances": [...]}')
        if "instances" not in document:
            raise bad("missing_field", 'body must have an "instances" array', field="instances")
        if len(document) != 1:
            extra = sorted(k for k in document if k != "instances")[0]
            raise bad("unknown_field", f"unexpected top-level field {extra!r}", field=extra)
        instances = document["instances"]
        if type(instances) is not list:
            raise bad("invalid_body", '"instances" must be an array', field="instances")
        self._check_row_count(len(instances))
        if len(instances) <= FAST_PATH_ROWS:
            fast = self._small_json_batch(instances)
            if fast is not None:
                return fast
        rows = [self._row_values(i, row) for i, row in enumerate(instances)]
        flat = list(chain.from_iterable(rows))
        if not set(map(type, flat)) <= NUMBER_TYPES:
            self._raise_first_type_error(rows)
        try:
            matrix = np.array(flat, dtype=np.float64)
        except OverflowError:
            matrix = np.array([_to_float(v) for v in flat], dtype=np.float64)
        return self._checked(matrix.reshape(len(rows), self.width))

    def _small_json_batch(self, instances: list[Any]) -> np.ndarray | None:
        """The float32 matrix if every row is valid, else None (the caller then finds the error)."""
        width, names, minimum, maximum = self.width, self.name_set, self._minimum_list, self._maximum_list
        rows = []
        for row in instances:
            row_type = type(row)
            if row_type is dict:
                if len(row) != width or row.keys() != names:
                    return None
                row = self._in_schema_order(row)
            elif row_type is not list or len(row) != width:
                return None
            # Exact types first (bool is refused), then minimum <= value <= maximum for every value.
            if not (set(map(type, row)) <= NUMBER_TYPES and all(map(le, minimum, row)) and all(map(le, row, maximum))):
                return None
            rows.append(row)
        return np.array(rows, dtype=np.float32)

    def _row_values(self, index: int, row: Any) -> Sequence[Any]:
        row_type = type(row)
        if row_type is list:
            if len(row) != self.width:
                raise bad("wrong_feature_count", f"row {index} has {len(row)} values, expected {self.width}", row=index)
            return row
        if row_type is dict:
            if len(row) != self.width or row.keys() != self.name_set:
                self._raise_key_error(index, row)
            return self._in_schema_order(row)  # one C call per row, not a lookup per feature in Python
        raise bad("invalid_row", f"row {index} must be an array of {self.width} numbers or an object", row=index)

    def _raise_key_error(self, index: int, row: dict[str, Any]) -> None:
        for key in row:
            if key not in self.name_set:
                raise bad("unknown_field", f"row {index} has unknown feature {key!r}", row=index, field=key)
        missing = next(name for name in self.names if name not in row)
        raise bad("missing_field", f"row {index} lacks feature {missing!r}", row=index, field=missing)

    def _raise_first_type_error(self, rows: list[Sequence[Any]]) -> None:
        for index, row in enumerate(rows):
            for column, value in enumerate(row):
                if type(value) not in NUMBER_TYPES:
                    name = self.names[column]
                    raise bad(
                        "wrong_type",
                        f"row {index} feature {name!r} must be a number, got {_json_type(value)}",
                        row=index,
                        field=name,
                    )

    def _check_row_count(self, count: int) -> None:
        if count == 0:
            raise bad("empty_batch", "at least one row is required", field="instances")
        if count > self.max_rows:
            raise bad(
                "too_many_rows", f"{count} rows exceed the limit of {self.max_rows} per request", field="instances"
            )

    # --- CSV --------------------------------------------------------------------------------
    def from_csv(self, body: bytes) -> np.ndarray:
        if body.startswith(UTF8_BOM):
            body = body[len(UTF8_BOM) :]
        # Every line break ends a row: more breaks than rows allowed is refused before splitting 6 MB of them.
        if max(body.count(b"\n"), body.count(b"\r")) > self.max_rows:
            raise bad("too_many_rows", f"body holds more than {self.max_rows} rows", field="instances")
        if not CSV_ALLOWED.fullmatch(body):
            self._raise_csv_character_error(body)
        lines = body.decode("ascii").splitlines()
        self._check_row_count(len(lines))
        cells = [line.split(",") for line in lines]
        for index, row in enumerate(cells):
            if len(row) != self.width:
                raise bad("wrong_feature_count", f"row {index} has {len(row)} values, expected {self.width}", row=index)
        try:
            values = [float(cell) for cell in chain.from_iterable(cells)]
        except ValueError:
            self._raise_csv_number_error(cells)
            raise
        count = len(cells)
        if (
            count <= FAST_PATH_ROWS
            and all(map(le, self._minimum_list * count, values))
            and all(map(le, values, self._maximum_list * count))
        ):
            return np.array(values, dtype=np.float32).reshape(count, self.width)
        return self._checked(np.array(values, dtype=np.float64).reshape(count, self.width))

    def _raise_csv_character_error(self, body: bytes) -> None:
        match = re.compile(rb"[^0-9eE+\-., \t\r\n]").search(body)
        position = match.start() if match else 0
        row_start = body.rfind(b"\n", 0, position) + 1
        row = body.count(b"\n", 0, position)
        column = body.count(b",", row_start, position)
        field = self.names[column] if column < self.width else None
        raise bad(
            "wrong_type",
            f"row {row} has a non-numeric value (CSV takes plain decimal numbers, no header, quotes, nan or inf)",
            row=row,
            field=field,
        )

    def _raise_csv_number_error(self, cells: list[list[str]]) -> None:
        for index, row in enumerate(cells):
            for column, cell in enumerate(row):
                try:
                    float(cell)
                except ValueError:
                    name = self.names[column]
                    raise bad(
                        "wrong_type",
                        f"row {index} feature {name!r}: {cell.strip()!r} is not a number",
                        row=index,
                        field=name,
                    ) from None

    # --- ranges -----------------------------------------------------------------------------
    def _checked(self, matrix: np.ndarray) -> np.ndarray:
        # Comparisons with NaN are false, so "all >= minimum" also refuses NaN.
        if (matrix >= self.minimum).all() and (matrix <= self.maximum).all():
            return matrix.astype(np.float32)
        outside = ~((matrix >= self.minimum) & (matrix <= self.maximum))
        index, column = (int(i) for i in np.argwhere(outside)[0])
        name, value = self.names[column], float(matrix[index, column])
        if not math.isfinite(value):
            raise bad("non_finite", f"row {index} feature {name!r} is not a finite number", row=index, field=name)
        raise bad(
            "out_of_range",
            f"row {index} feature {name!r} = {value:g} is outside [{self.minimum[column]:g}, {self.maximum[column]:g}]",
            row=index,
            field=name,
        )


def _openers(body: bytes) -> tuple[int, int]:
    """How many '[' and '{' the body holds."""
    if len(body) < NUMPY_COUNT_BYTES:
        return body.count(b"["), body.count(b"{")
    octets = np.frombuffer(body, dtype=np.uint8)
    return int(np.count_nonzero(octets == 0x5B)), int(np.count_nonzero(octets == 0x7B))


def _to_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer literal too large for a double: surely out of range
        return math.inf if value > 0 else -math.inf


def _json_type(value: Any) -> str:
    names = {bool: "boolean", str: "string", type(None): "null", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)

"""Decode captured request/response bodies (JSON, CSV, BASE64 of either) into rows and predictions."""

import base64
import binascii
import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

try:
    import orjson
except ImportError:  # pinned in requirements.txt; without it the job still runs, on the standard library's parser
    orjson = None  # type: ignore[assignment]

Instance = list[Any] | dict[str, Any]


def loads(text: str) -> Any:
    """Parse JSON with orjson (several times faster: every capture line holds two or three JSON documents) when it
    accepts the text, else with the standard library, which also reads NaN/Infinity literals and integers beyond
    64 bits, and raises the errors the callers report (json.JSONDecodeError, RecursionError)."""
    if orjson is not None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


class MalformedPayload(ValueError):
    """A captured body that cannot be turned into instances or predictions."""


@dataclass(frozen=True)
class Prediction:
    """One model output as the response gave it; the model's task reads it (model_output.ModelOutput.read).

    The serving contract per task: binary {label, probability = P(positive)}, multiclass {label, probabilities
    {class name: p}}, regression {value}; each with model_version. A CSV response row keeps its numeric columns in
    `cells` (binary label,probability; multiclass label,<p per class>; regression value), the version split off."""

    label: int | None
    probability: float | None
    model_version: str | None
    probabilities: Any = None  # multiclass: {"<class name>": p, ...} (or a list in label order)
    value: float | None = None  # regression: the predicted value
    cells: tuple[float, ...] | None = None  # a CSV response row's numeric columns

    def with_version(self, version: str) -> "Prediction":
        return replace(self, model_version=version)


def _body_text(capture: Mapping[str, Any]) -> tuple[str, str]:
    """Return (format, text) where format is "json" or "csv"; a leading byte-order mark is dropped, as the
    model server drops it."""
    fmt, text = _raw_body_text(capture)
    return fmt, text.removeprefix("\ufeff")


def _raw_body_text(capture: Mapping[str, Any]) -> tuple[str, str]:
    data = capture.get("data")
    if data is None:
        raise MalformedPayload("missing data")
    encoding = str(capture.get("encoding", "")).upper()
    content_type = str(capture.get("observedContentType", "")).lower()
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, TypeError) as error:
            raise MalformedPayload(f"bad base64: {error}") from error
        fmt = "csv" if "csv" in content_type else "json" if "json" in content_type else _sniff(data)
        return fmt, data
    if not isinstance(data, str):
        # Some producers embed the JSON body as an object rather than a string.
        try:
            return "json", json.dumps(data)
        except RecursionError as error:
            raise MalformedPayload("bad json: nested too deeply") from error
    if encoding == "CSV":
        return "csv", data
    if encoding == "JSON":
        return "json", data
    return _sniff(data), data


def _sniff(text: str) -> str:
    return "json" if text.lstrip()[:1] in ("{", "[") else "csv"


def _csv_rows(text: str) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]


def _load_json(text: str) -> Any:
    try:
        return loads(text)
    except json.JSONDecodeError as error:
        raise MalformedPayload(f"bad json: {error.msg}") from error
    except RecursionError as error:  # json.loads recurses once per nesting level
        raise MalformedPayload("bad json: nested too deeply") from error


def decode_instances(capture: Mapping[str, Any]) -> list[Instance]:
    """Request body -> instances (lists in schema order, or dicts keyed by feature name)."""
    fmt, text = _body_text(capture)
    if fmt == "csv":
        return [list(row) for row in _csv_rows(text)]
    body = _load_json(text)
    instances = body.get("instances", body.get("inputs")) if isinstance(body, dict) else body
    if not isinstance(instances, list) or not instances:
        raise MalformedPayload("no instances in request")
    if all(isinstance(item, int | float) for item in instances):
        instances = [instances]  # a single un-nested row
    if not all(isinstance(item, list | dict) for item in instances):
        raise MalformedPayload("instances must be lists or objects")
    return instances


def to_float(value: Any) -> float:
    """Numeric value or NaN for missing/unparseable values (counted as missing, not fatal)."""
    if type(value) is float:  # the common case, 30 times per row: finite unless inf - inf or nan - nan
        return value if value - value == 0.0 else math.nan
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def finite_number(value: Any) -> float:
    """A finite number, or its text; raises MalformedPayload otherwise (bools, `"inf"`, and `1e999`, which JSON
    and CSV parsers turn into an infinite float)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MalformedPayload(f"bad label: {str(value)[:40]!r}")
    try:
        number = float(value)
    except ValueError as error:
        raise MalformedPayload(f"bad label: {str(value)[:40]!r}") from error
    if not math.isfinite(number):
        raise MalformedPayload(f"bad label: {str(value)[:40]!r} is not finite")
    return number


def to_label(value: Any) -> int:
    """A class label: an integer-valued finite number (or its text); raises MalformedPayload otherwise."""
    number = finite_number(value)
    if not number.is_integer():
        raise MalformedPayload(f"bad label: {str(value)[:40]!r} is not a class index")
    return int(number)


def _prediction_from_object(item: Any) -> Prediction:
    if isinstance(item, int | float) and not isinstance(item, bool):
        return Prediction(label=None, probability=float(item), model_version=None)
    if not isinstance(item, dict):
        raise MalformedPayload("prediction must be an object or number")
    probability = item.get("probability", item.get("score"))
    label = item.get("label", item.get("predicted_label"))
    version = item.get("model_version")
    value = item.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float | str)):
        raise MalformedPayload(f"bad value: {str(value)[:40]!r}")
    return Prediction(
        label=None if label is None else to_label(label),
        probability=None if probability is None else to_float(probability),
        model_version=None if version is None else str(version),
        probabilities=item.get("probabilities"),
        value=None if value is None else to_float(value),
    )


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _prediction_from_csv(row: list[str]) -> Prediction:
    """A CSV output row: numeric columns, then the model_version (never a number: a semantic version) when there
    is one. Binary label,probability[,version]; multiclass label,<p per class>[,version]; regression
    value[,version]; a lone number is a probability (binary) or a value (regression)."""
    cells = [cell.strip() for cell in row]
    version = None
    if len(cells) >= 2 and not _is_number(cells[-1]):
        version = cells.pop() or None
    if not cells:
        raise MalformedPayload("csv prediction without columns")
    if len(cells) == 1:
        return Prediction(None, to_float(cells[0]), version, cells=(to_float(cells[0]),))
    label = to_label(cells[0])
    numbers = (float(label), *(to_float(cell) for cell in cells[1:]))
    return Prediction(label, numbers[1] if len(cells) == 2 else None, version, cells=numbers)


def decode_predictions(capture: Mapping[str, Any]) -> list[Prediction]:
    """Response body -> one Prediction per instance."""
    fmt, text = _body_text(capture)
    try:
        if fmt == "csv":
            return [_prediction_from_csv(row) for row in _csv_rows(text)]
        body = _load_json(text)
        items = body.get("predictions") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise MalformedPayload("no predictions in response")
        version = body.get("model_version") if isinstance(body, dict) else None
        predictions = [_prediction_from_object(item) for item in items]
    except (TypeError, ValueError, ArithmeticError) as error:
        if isinstance(error, MalformedPayload):
            raise
        raise MalformedPayload(f"bad prediction: {error}") from error
    if version is not None:
        # A response-level version applies to predictions that do not carry their own.
        predictions = [p if p.model_version else p.with_version(str(version)) for p in predictions]
    return predictions

"""The model card's own rules (model_container/card.py): the batch cap against the 6 MB InvokeEndpoint body, and the
fields other services take as they are."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from model_container.card import MULTICLASS, CardError, ModelCard, max_batch_rows

# SageMaker Runtime API reference, InvokeEndpoint: request and response "Body ... Maximum length of 6291456"
# (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html).
INVOKE_BODY_LIMIT = 6291456


def widest_value(feature: dict[str, Any]) -> float:
    """The in-range value with the longest shortest-round-trip JSON form (what json.dumps writes)."""
    low, high = feature["minimum"], feature["maximum"]
    candidates = [math.nextafter(high, low), math.nextafter(low, high), low, high]
    if low < 0 < high:
        candidates.append(-2.2250738585072014e-308)
    if low <= 2.2250738585072014e-308 < high:
        candidates.append(2.2250738585072014e-308)
    candidates += [-1.2345678901234567e-100 if low < 0 else 1.2345678901234567e-100]
    inside = [value for value in candidates if low <= value <= high]
    return max(inside, key=lambda value: len(json.dumps(value)))


def test_the_widest_request_at_the_cap_fits_the_invoke_endpoint_body(model_package: Path) -> None:
    card = ModelCard.load(model_package)
    features = card.feature_schema["features"]
    rows = card.max_batch_rows
    array_row = [widest_value(feature) for feature in features]
    object_row = dict(zip(card.feature_names, array_row, strict=True))
    for row in (array_row, object_row):
        body = json.dumps({"instances": [row] * rows}).encode()  # json.dumps' default ", " / ": " separators
        assert len(body) <= INVOKE_BODY_LIMIT, (type(row).__name__, len(body), rows)


def test_the_answer_at_the_cap_fits_the_invoke_endpoint_body(model_package: Path) -> None:
    card = ModelCard.load(model_package)
    answer = copy.deepcopy(card.response_example())
    answer["model_version"] = card.version
    for key in ("probability", "value"):
        if key in answer:
            answer[key] = -1.2345678901234567e-100
    body = orjson.dumps({"predictions": [answer] * card.max_batch_rows})
    assert len(body) <= INVOKE_BODY_LIMIT


def multiclass_card(classes: int, name_length: int) -> dict[str, Any]:
    labels = {str(i): f"{i:0{name_length}d}" for i in range(classes)}
    features = [{"name": f"feature_{i}", "minimum": -1.0, "maximum": 1.0} for i in range(4)]
    return {
        "model_name": "many-classes",
        "model_version": "1.0.0",
        "task": MULTICLASS,
        "labels": labels,
        "feature_schema": {"features": features, "max_batch_rows": 1},
    }


def test_the_cap_counts_the_real_class_names_of_the_answer() -> None:
    raw = multiclass_card(1000, 100)
    names = list(raw["labels"].values())
    limit = max_batch_rows([f["name"] for f in raw["feature_schema"]["features"]], MULTICLASS, names)
    raw["feature_schema"]["max_batch_rows"] = limit
    card = ModelCard.from_dict(raw)
    answer = {"label": 999, "probabilities": dict.fromkeys(names, 0.123457), "model_version": card.version}
    assert len(orjson.dumps({"predictions": [answer] * limit})) <= INVOKE_BODY_LIMIT
    raw["feature_schema"]["max_batch_rows"] = limit + 1
    with pytest.raises(CardError, match=r"'feature_schema\.max_batch_rows': \d+ is above \d+: .*6 MB"):
        ModelCard.from_dict(raw)

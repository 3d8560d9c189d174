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
    raw = multiclass_card(50, 255)  # the most classes a card may have, at the longest names
    names = list(raw["labels"].values())
    limit = max_batch_rows([f["name"] for f in raw["feature_schema"]["features"]], MULTICLASS, names)
    assert limit < 1000  # the answer binds, not the 4-feature request
    raw["feature_schema"]["max_batch_rows"] = limit
    card = ModelCard.from_dict(raw)
    answer = {"label": 49, "probabilities": dict.fromkeys(names, 0.123457), "model_version": card.version}
    assert len(orjson.dumps({"predictions": [answer] * limit})) <= INVOKE_BODY_LIMIT
    raw["feature_schema"]["max_batch_rows"] = limit + 1
    with pytest.raises(CardError, match=r"'feature_schema\.max_batch_rows': \d+ is above \d+: .*6 MB"):
        ModelCard.from_dict(raw)


def binary_card(**change: Any) -> dict[str, Any]:
    features = [{"name": "x", "minimum": 0.0, "maximum": 1.0}]
    raw = {
        "model_name": "a-model",
        "model_version": "1.0.0",
        "task": "binary_classification",
        "labels": {"0": "no", "1": "yes"},
        "feature_schema": {"features": features, "max_batch_rows": 1},
    }
    return {**raw, **change}


# CloudWatch API reference, Dimension (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_Dimension.html):
# values ASCII only, not blank, no control characters; an alarm's dimension value is 1-255 characters
# (https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.aws_cloudwatch.CfnAlarm.DimensionProperty.html).
@pytest.mark.parametrize("name", ["café", "Größe", " ", "   ", "a\tb", "line\n", "x" * 256, "\x7f"])
def test_a_class_name_cloudwatch_cannot_take_as_a_dimension_value_is_refused_naming_the_field(name: str) -> None:
    with pytest.raises(CardError, match=r"model card field 'labels\.1': .* CloudWatch dimension value"):
        ModelCard.from_dict(binary_card(labels={"0": "no", "1": name}))


def test_printable_ascii_class_names_up_to_255_characters_are_taken() -> None:
    card = ModelCard.from_dict(binary_card(labels={"0": "x" * 255, "1": "a b (c) / d-e_f.g"}))
    assert card.label_names == ["x" * 255, "a b (c) / d-e_f.g"]


def test_a_card_with_more_classes_than_the_metric_streams_is_refused() -> None:
    from model_container.card import MAX_CLASSES

    ModelCard.from_dict(multiclass_card(MAX_CLASSES, 3))
    with pytest.raises(
        CardError, match=rf"model card field 'labels': {MAX_CLASSES + 1} classes; at most {MAX_CLASSES}"
    ):
        ModelCard.from_dict(multiclass_card(MAX_CLASSES + 1, 3))


@pytest.mark.parametrize("positive", [True, False, 2, -1, "1", 1.0, None])
def test_positive_label_must_be_the_integer_0_or_1(positive: Any) -> None:
    with pytest.raises(CardError, match=r"model card field 'positive_label'"):
        ModelCard.from_dict(binary_card(positive_label=positive))


@pytest.mark.parametrize("positive", [0, 1])
def test_positive_label_0_or_1_is_taken(positive: int) -> None:
    assert ModelCard.from_dict(binary_card(positive_label=positive)).positive_label == positive

"""The contract generated from each example package's card (binary, multiclass, regression): its request model
takes the package's holdout rows and refuses what the card does not allow, its response model is what the container
answers for that task, and nothing in it comes from another model."""

from __future__ import annotations

import csv
import functools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft4Validator

from model_container.card import BINARY, MULTICLASS, REGRESSION, ModelCard, max_batch_rows
from model_container.contract.generate import configured_api_version, main
from model_container.server.model import LoadedModel
from scripts.smoke_test import prediction_problem
from tests.model_packages import EXAMPLES, example_package

DOCUMENTS = ("request.schema.json", "response.schema.json", "openapi.json", "container-openapi.json")


@functools.cache
def contract_of(package: Path) -> Path:
    """The contract generated from `package`'s card, in a directory of its own (beside the package)."""
    directory = package.parent / "generated-contract"
    assert main(["--card", str(package / "metadata.json"), "--dir", str(directory)]) == 0
    return directory


def document(package: Path, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((contract_of(package) / name).read_text())
    return loaded


def holdout_rows(package: Path) -> list[list[float]]:
    """holdout.csv's feature columns (its first column is the label or target)."""
    with (package / "holdout.csv").open() as file:
        return [[float(value) for value in line[1:]] for line in csv.reader(file)]


@pytest.fixture
def card(model_package: Path) -> ModelCard:
    return ModelCard.load(model_package)


@pytest.fixture
def request_validator(model_package: Path) -> Draft4Validator:
    return Draft4Validator(document(model_package, "request.schema.json"))


def test_the_request_model_takes_every_holdout_row_as_array_and_as_named_features(
    model_package: Path, card: ModelCard, request_validator: Draft4Validator
) -> None:
    rows = holdout_rows(model_package)
    assert rows and all(len(row) == card.width for row in rows)
    named = [dict(zip(card.feature_names, row, strict=True)) for row in rows]
    for body in ({"instances": rows}, {"instances": named}):
        errors = [error.message for error in request_validator.iter_errors(body)]
        assert errors == []


def test_the_request_model_is_the_cards_features_in_order(model_package: Path, card: ModelCard) -> None:
    instances = document(model_package, "request.schema.json")["properties"]["instances"]
    [array_row, object_row] = instances["items"]["anyOf"]
    assert array_row["minItems"] == array_row["maxItems"] == card.width == len(array_row["items"])
    assert list(object_row["properties"]) == card.feature_names == object_row["required"]
    for feature, position in zip(card.feature_schema["features"], array_row["items"], strict=True):
        assert (position["minimum"], position["maximum"]) == (feature["minimum"], feature["maximum"])
        assert object_row["properties"][feature["name"]] == position


def test_the_batch_cap_is_the_cards_and_fits_the_payload(model_package: Path, card: ModelCard) -> None:
    instances = document(model_package, "request.schema.json")["properties"]["instances"]
    assert (
        instances["maxItems"] == card.max_batch_rows <= max_batch_rows(card.feature_names, card.task, card.label_names)
    )
    assert str(card.max_batch_rows) in document(model_package, "openapi.json")["info"]["description"]


def test_the_request_model_refuses_values_out_of_each_features_range(
    model_package: Path, card: ModelCard, request_validator: Draft4Validator
) -> None:
    row = holdout_rows(model_package)[0]
    for index, feature in enumerate(card.feature_schema["features"]):
        span = feature["maximum"] - feature["minimum"]
        for value in (feature["maximum"] + span, feature["minimum"] - span):
            bad = [*row[:index], value, *row[index + 1 :]]
            assert not request_validator.is_valid({"instances": [bad]}), (feature["name"], value)
            named = dict(zip(card.feature_names, bad, strict=True))
            assert not request_validator.is_valid({"instances": [named]}), (feature["name"], value)


def test_the_request_model_refuses_missing_extra_and_miscounted_fields(
    model_package: Path, card: ModelCard, request_validator: Draft4Validator
) -> None:
    row = holdout_rows(model_package)[0]
    named = dict(zip(card.feature_names, row, strict=True))
    for name in card.feature_names:
        assert not request_validator.is_valid({"instances": [{k: v for k, v in named.items() if k != name}]}), name
    assert not request_validator.is_valid({"instances": [{**named, "not_a_feature": 1.0}]})
    assert not request_validator.is_valid({"instances": [row[:-1]]})
    assert not request_validator.is_valid({"instances": [[*row, row[0]]]})
    assert not request_validator.is_valid({"instances": [row], "extra": 1})
    assert not request_validator.is_valid({"instances": []})


def test_the_response_model_is_the_tasks(model_package: Path, card: ModelCard) -> None:
    item = document(model_package, "response.schema.json")["properties"]["predictions"]["items"]
    properties = item["properties"]
    expected = {BINARY: ["label", "probability"], MULTICLASS: ["label", "probabilities"], REGRESSION: ["value"]}
    assert item["required"] == [*expected[card.task], "model_version"] == list(properties)
    assert item["additionalProperties"] is False
    if card.is_classifier:
        assert properties["label"]["enum"] == list(range(card.classes))
        for index, name in enumerate(card.label_names):
            assert f"{index} = {name}" in properties["label"]["description"]
    if card.task == BINARY:
        assert (properties["probability"]["minimum"], properties["probability"]["maximum"]) == (0, 1)
        assert card.label_names[card.positive_label or 0] in properties["probability"]["description"]
    if card.task == MULTICLASS:
        probabilities = properties["probabilities"]
        assert list(probabilities["properties"]) == card.label_names == probabilities["required"]
        assert probabilities["additionalProperties"] is False
    if card.task == REGRESSION:
        assert card.target["name"] in properties["value"]["description"]
        assert card.target.get("unit", "") in properties["value"]["description"]


def test_the_response_model_validates_the_example_and_the_containers_answers(
    model_package: Path, card: ModelCard
) -> None:
    """What the container answers for the holdout rows is what the response model (and the smoke test) accept."""
    validator = Draft4Validator(document(model_package, "response.schema.json"))
    openapi_response = document(model_package, "openapi.json")["components"]["schemas"]["PredictResponse"]
    assert openapi_response["example"] == {"predictions": [card.response_example()]}
    assert validator.is_valid(openapi_response["example"])
    if card.task == MULTICLASS:  # the example answers as a model does: the label is the most probable class
        example = card.response_example()
        probabilities = list(example["probabilities"].values())
        assert example["label"] == probabilities.index(max(probabilities)) and round(sum(probabilities), 6) == 1
    model = LoadedModel.load(model_package)
    rows = np.asarray(holdout_rows(model_package), dtype=np.float32)
    answer = json.loads(model.json_body(*model.predict(rows)))
    assert [error.message for error in validator.iter_errors(answer)] == []
    assert len(answer["predictions"]) == len(rows)
    assert [prediction_problem(p, card) for p in answer["predictions"]] == [None] * len(rows)


def test_a_prediction_of_another_task_fails_the_response_model(model_package: Path, card: ModelCard) -> None:
    validator = Draft4Validator(document(model_package, "response.schema.json"))
    for name in EXAMPLES.values():
        other = ModelCard.load(example_package(name))
        if other.task != card.task:
            assert not validator.is_valid({"predictions": [other.response_example()]}), other.task


def test_titles_descriptions_and_examples_come_from_the_card(model_package: Path, card: ModelCard) -> None:
    openapi = document(model_package, "openapi.json")
    major = configured_api_version()
    assert openapi["info"]["version"] == f"{major}.0.0" and list(openapi["paths"]) == [f"/v{major}/predict"]
    assert card.name in openapi["info"]["title"]
    description = openapi["info"]["description"]
    assert card.version in description and f" {card.width} " in description
    examples = openapi["paths"][f"/v{major}/predict"]["post"]["requestBody"]["content"]["application/json"]
    request_validator = Draft4Validator(document(model_package, "request.schema.json"))
    for example in examples["examples"].values():
        assert request_validator.is_valid(example["value"])
    [named] = examples["examples"]["objects"]["value"]["instances"]
    assert list(named) == card.feature_names
    error = openapi["components"]["schemas"]["ContainerError"]["example"]["error"]
    assert error["field"] == card.feature_names[0] and repr(card.feature_names[0]) in error["message"]
    container = document(model_package, "container-openapi.json")
    assert container["info"]["version"] == card.version and card.name in container["info"]["title"]


def test_nothing_in_the_contract_comes_from_another_example_model(model_package: Path, card: ModelCard) -> None:
    """No feature, class, target or model name of another example appears unless this card has it too."""
    own = {card.name, *card.feature_names, *card.label_names, card.target.get("name", "")}
    foreign = set()
    for name in EXAMPLES.values():
        other = ModelCard.load(example_package(name))
        foreign |= {other.name, *other.feature_names, *other.label_names, other.target.get("name", "")}
    foreign -= own | {""}
    assert foreign  # the examples differ: the check can fail
    for file in DOCUMENTS:
        text = (contract_of(model_package) / file).read_text()
        assert [word for word in sorted(foreign) if re.search(rf"\b{re.escape(word)}\b", text)] == [], file
    for name in own - {""}:
        assert name in (contract_of(model_package) / "openapi.json").read_text()

"""The API Gateway models of each task's card (binary, multiclass, regression), on a small stack with one
PredictionApi: the request model is the card's features, the 200 method response carries the task's response model,
and the path is /v{api.version}/predict."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Match, Template

from ml_constructs.prediction_api import PredictionApi, resource_path
from model_container.card import BINARY, MULTICLASS, REGRESSION, ModelCard
from model_container.contract.generate import configured_api_version, main
from platform_config import ApiSettings

PREDICTION_FIELDS = {BINARY: {"label", "probability"}, MULTICLASS: {"label", "probabilities"}, REGRESSION: {"value"}}


@functools.cache
def synthesized(package: Path) -> tuple[Template, Path]:
    """A stack with one PredictionApi whose contract is generated from `package`'s card."""
    contract = package.parent / "api-contract"
    assert main(["--card", str(package), "--dir", str(contract)]) == 0
    stack = Stack(App(), "Api")
    PredictionApi(
        stack,
        "Api",
        api_name="a",
        endpoint_name="e",
        settings=ApiSettings(version=configured_api_version()),
        logs_key=kms.Key(stack, "Key"),
        log_retention_days=30,
        removal_policy=RemovalPolicy.DESTROY,
        contract_dir=contract,
    )
    return Template.from_stack(stack), contract


def model_schema(template: Template, name: str) -> dict[str, Any]:
    [model] = template.find_resources("AWS::ApiGateway::Model", {"Properties": {"Name": name}}).values()
    schema: dict[str, Any] = model["Properties"]["Schema"]
    return schema


def test_the_request_model_is_the_cards_features(model_package: Path) -> None:
    card = ModelCard.load(model_package)
    template, contract = synthesized(model_package)
    schema = model_schema(template, "PredictRequest")
    assert schema == json.loads((contract / "request.schema.json").read_text())
    instances = schema["properties"]["instances"]
    [array_row, object_row] = instances["items"]["anyOf"]
    assert len(object_row["properties"]) == card.width == len(array_row["items"])
    assert list(object_row["properties"]) == card.feature_names
    assert instances["maxItems"] == card.max_batch_rows


def test_the_200_response_carries_the_tasks_response_model(model_package: Path) -> None:
    card = ModelCard.load(model_package)
    template, contract = synthesized(model_package)
    schema = model_schema(template, "PredictResponse")
    assert schema == json.loads((contract / "response.schema.json").read_text())
    item = schema["properties"]["predictions"]["items"]
    assert set(item["properties"]) == PREDICTION_FIELDS[card.task] | {"model_version"}
    if card.task == MULTICLASS:
        assert item["properties"]["probabilities"]["required"] == card.label_names
    [response_model] = template.find_resources("AWS::ApiGateway::Model", {"Properties": {"Name": "PredictResponse"}})
    [request_model] = template.find_resources("AWS::ApiGateway::Model", {"Properties": {"Name": "PredictRequest"}})
    template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "POST",
            "RequestModels": {"application/json": {"Ref": request_model}},
            "MethodResponses": Match.array_with(
                [{"StatusCode": "200", "ResponseModels": {"application/json": {"Ref": response_model}}}]
            ),
        },
    )


def test_the_path_is_the_api_version_whatever_the_task(model_package: Path) -> None:
    template, _ = synthesized(model_package)
    parts = {r["Properties"]["PathPart"] for r in template.find_resources("AWS::ApiGateway::Resource").values()}
    assert parts == set(resource_path(configured_api_version()).strip("/").split("/"))


def test_a_contract_generated_for_another_api_version_fails_naming_the_setting(tmp_path: Path) -> None:
    from platform_config import ConfigError

    major = configured_api_version()
    contract = tmp_path / "contract"
    assert main(["--dir", str(contract), "--api-version", str(major + 1)]) == 0
    stack = Stack(App(), "Api")
    with pytest.raises(ConfigError) as raised:
        PredictionApi(
            stack,
            "Api",
            api_name="a",
            endpoint_name="e",
            settings=ApiSettings(version=major),
            logs_key=kms.Key(stack, "Key"),
            log_retention_days=30,
            removal_policy=RemovalPolicy.DESTROY,
            contract_dir=contract,
        )
    message = str(raised.value)
    assert raised.value.key == "ml-platform.defaults.api.version"
    assert f"generated for API version {major + 1}" in message and "make contracts" in message

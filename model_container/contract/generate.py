"""Generate the API contract from the model card (metadata.json of the model package).

``python -m model_container.contract.generate [--card model_container/dist/metadata.json]`` writes, into this
directory (``--dir`` elsewhere):
- request.schema.json: the API Gateway request model (JSON Schema draft-04, self-contained): the card's features in
  order with their ranges, at most feature_schema.max_batch_rows rows;
- response.schema.json: the API Gateway response model of the card's task (draft-04): binary label + probability,
  multiclass label + probabilities by class name, regression value;
- openapi.json: OpenAPI 3.0 for API consumers (POST /v{major}/predict behind API Gateway, info.version
  "{major}.0.0", the major being cdk.json's api.version); title, description and examples from the card;
- container-openapi.json: OpenAPI 3.0 of the serving container itself (POST /invocations, GET /ping and, for
  Batch Transform, GET /execution-parameters), versioned as the model;
- generated-from.json: the SHA-256 of each contract field of the card (CARD_FIELDS), of this file and of each
  output, so that synth can refuse a stale contract by comparing hashes without importing this module
  (stacks/app_builder.py), and the api_version it was generated for (ml_constructs/prediction_api.py).
``--check`` writes nothing and exits 1 if a committed file differs from a fresh generation; a card that cannot be
read or does not fit the contract exits 2 naming the card field.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import sys
from pathlib import Path
from typing import Any

import orjson

from model_container.card import BINARY, MULTICLASS, ModelCard, card_field_digests
from model_container.contract import CONTRACT_DIR, DEFAULT_CARD

ROOT = Path(__file__).resolve().parents[2]
CDK_JSON = ROOT / "cdk.json"

JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
DRAFT_04 = "http://json-schema.org/draft-04/schema#"
# OpenAPI 3.0 has no positional (tuple) array items, so the array-row form there can only say "N numbers"; the
# per-position schemas ride along in this extension for tools that want them.
POSITIONAL_EXTENSION = "x-positional-items"
MANIFEST = "generated-from.json"
REGENERATE = "make contracts (python -m model_container.contract.generate)"
# The card fields the contract is made of; synth recomputes their hashes from dist/metadata.json (app_builder.py).
# model_version is one: the examples and the container document carry it.
CARD_FIELDS = (
    "model_name",
    "model_version",
    "description",
    "task",
    "feature_schema",
    "labels",
    "positive_label",
    "target",
)
DOCUMENTS = ("request.schema.json", "response.schema.json", "openapi.json", "container-openapi.json")


EXECUTION_PARAMETERS_PATH = "/execution-parameters"
# The answer of model_container/server/batch.py execution_parameters(), with the ranges of the CreateTransformJob
# fields it stands in for (SageMaker API reference, CreateTransformJob: MaxConcurrentTransforms >= 0,
# MaxPayloadInMB 0..100; BatchStrategy MultiRecord | SingleRecord, spelled MULTI_RECORD | SINGLE_RECORD here as in
# the Developer Guide's example answer).
EXECUTION_PARAMETERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "MaxConcurrentTransforms": {"type": "integer", "minimum": 1},
        "BatchStrategy": {"type": "string", "enum": ["MULTI_RECORD", "SINGLE_RECORD"]},
        "MaxPayloadInMB": {"type": "integer", "minimum": 1, "maximum": 100},
    },
    "required": ["MaxConcurrentTransforms", "BatchStrategy", "MaxPayloadInMB"],
    "additionalProperties": False,
}


# ---- request ------------------------------------------------------------------------------------------------
def feature_property(feature: dict[str, Any]) -> dict[str, Any]:
    return {"type": "number", "minimum": feature["minimum"], "maximum": feature["maximum"]}


def object_row(schema: dict[str, Any]) -> dict[str, Any]:
    features = schema["features"]
    return {
        "type": "object",
        "description": "One row as named features.",
        "properties": {f["name"]: feature_property(f) for f in features},
        "required": [f["name"] for f in features if f.get("required", True)],
        "additionalProperties": False,
    }


def array_row_draft4(schema: dict[str, Any]) -> dict[str, Any]:
    features = schema["features"]
    return {
        "type": "array",
        "description": "One row as numbers in feature order: " + ", ".join(f["name"] for f in features),
        "items": [feature_property(f) for f in features],
        "additionalItems": False,
        "minItems": len(features),
        "maxItems": len(features),
    }


def request_schema(card: ModelCard) -> dict[str, Any]:
    """The draft-04 request model: API Gateway validates bodies with it before the endpoint sees them."""
    schema = card.feature_schema
    return {"$schema": DRAFT_04, "title": "PredictRequest", **instances_body(schema, array_row_draft4(schema))}


def openapi_request_schema(card: ModelCard) -> dict[str, Any]:
    schema = card.feature_schema
    positional = array_row_draft4(schema)
    array_row = {
        "type": "array",
        "description": positional["description"]
        + ". Per-position ranges: see "
        + POSITIONAL_EXTENSION
        + " (OpenAPI 3.0 cannot express them; the gateway and container enforce them).",
        "items": {"type": "number"},
        "minItems": positional["minItems"],
        "maxItems": positional["maxItems"],
        POSITIONAL_EXTENSION: positional["items"],
    }
    return instances_body(schema, array_row)


def instances_body(schema: dict[str, Any], array_row: dict[str, Any]) -> dict[str, Any]:
    """{"instances": [row, ...]}, each row an array (as `array_row` describes it) or an object of features."""
    return {
        "type": "object",
        "required": ["instances"],
        "additionalProperties": False,
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "maxItems": schema["max_batch_rows"],
                "items": {"anyOf": [array_row, object_row(schema)]},
            }
        },
    }


def example_row(card: ModelCard) -> list[float]:
    """A row a consumer could send: each feature at the middle of its training range (inside the accepted one)."""
    row = []
    for f in card.feature_schema["features"]:
        low, high = f.get("training_min", f["minimum"]), f.get("training_max", f["maximum"])
        row.append(min(max(round((low + high) / 2, 4), f["minimum"]), f["maximum"]))
    return row


def examples(card: ModelCard) -> dict[str, Any]:
    row = example_row(card)
    named = dict(zip(card.feature_names, row, strict=True))
    return {
        "arrays": {"summary": "Rows as arrays in feature order", "value": {"instances": [row]}},
        "objects": {"summary": "Rows as named features", "value": {"instances": [named]}},
    }


# ---- response -----------------------------------------------------------------------------------------------
def _classes(card: ModelCard) -> str:
    return ", ".join(f"{index} = {name}" for index, name in enumerate(card.label_names))


def target_text(card: ModelCard) -> str:
    """'the predicted <name> (<unit>)', from what the card gives."""
    target = card.target
    unit = f" ({target['unit']})" if target.get("unit") else ""
    return f"the predicted {target['name']}{unit}"


def prediction_properties(card: ModelCard) -> dict[str, Any]:
    """One prediction's fields for the card's task (common serving contract, model_container/server)."""
    version = {"type": "string", "description": "model_version of the model card of the model that answered"}
    if card.task == BINARY:
        positive = card.positive_label or 0
        return {
            "label": {"type": "integer", "enum": [0, 1], "description": _classes(card)},
            "probability": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": f"probability of label {positive} ({card.label_names[positive]}), 6 decimals",
            },
            "model_version": version,
        }
    if card.task == MULTICLASS:
        return {
            "label": {
                "type": "integer",
                "enum": list(range(card.classes)),
                "description": f"the most probable class, by index: {_classes(card)}",
            },
            "probabilities": {
                "type": "object",
                "description": "the probability of each class by name, 6 decimals; they sum to 1 up to rounding",
                "properties": {name: {"type": "number", "minimum": 0, "maximum": 1} for name in card.label_names},
                "required": card.label_names,
                "additionalProperties": False,
            },
            "model_version": version,
        }
    about = str(card.target.get("description") or "").strip()
    value = f"{target_text(card)}, 6 decimals" + (f". {about}" if about else "")
    return {"value": {"type": "number", "description": value}, "model_version": version}


def prediction_schema(card: ModelCard) -> dict[str, Any]:
    properties = prediction_properties(card)
    return {
        "type": "object",
        "description": "Flat predictions, one object per input row in input order; the drift job and Model Monitor "
        "read " + ", ".join(f"predictions[*].{name}" for name in properties if name != "model_version") + ".",
        "required": ["predictions"],
        "additionalProperties": False,
        "properties": {
            "predictions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": list(properties),
                    "additionalProperties": False,
                    "properties": properties,
                },
            }
        },
    }


def response_schema(card: ModelCard) -> dict[str, Any]:
    """The draft-04 response model of the 200 answer (API Gateway method response; documentation and SDKs)."""
    return {"$schema": DRAFT_04, "title": "PredictResponse", **prediction_schema(card)}


def openapi_response_schema(card: ModelCard) -> dict[str, Any]:
    return {**prediction_schema(card), "example": {"predictions": [card.response_example()]}}


# ---- errors -------------------------------------------------------------------------------------------------
def error_schema(description: str, example: dict[str, Any], **extra: dict[str, Any]) -> dict[str, Any]:
    """The one error envelope of the API, `{"error": {code, message, request_id, ...}}`."""
    properties: dict[str, Any] = {
        "code": {"type": "string", "example": example["code"]},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        **extra,
    }
    return {
        "type": "object",
        "description": description,
        "required": ["error"],
        "properties": {
            "error": {"type": "object", "required": ["code", "message", "request_id"], "properties": properties}
        },
        "example": {"error": example},
    }


def container_error_schema(card: ModelCard) -> dict[str, Any]:
    """The container's error, its example an out-of-range value of the card's first feature (validation.py wording)."""
    feature = card.feature_schema["features"][0]
    low, high = feature["minimum"], feature["maximum"]
    value = high + (high - low)
    return error_schema(
        "Error raised by the model container. row (0-based) and field name the first offending value.",
        {
            "code": "out_of_range",
            "message": f"row 0 feature {feature['name']!r} = {value:g} is outside [{low:g}, {high:g}]",
            "request_id": "3f2a9c1e-17",
            "row": 0,
            "field": feature["name"],
        },
        row={"type": "integer", "minimum": 0},
        field={"type": "string"},
    )


GATEWAY_ERROR_SCHEMA = error_schema(
    "Error raised by API Gateway itself (validation, auth, throttling, model error, timeout); "
    "the same envelope as the container's errors.",
    {
        "code": "throttled",
        "message": "Too many requests, retry with backoff",
        "request_id": "c0ffee00-0000-4000-8000-000000000000",
    },
)


def error_response(description: str, *schemas: str) -> dict[str, Any]:
    refs = [{"$ref": f"#/components/schemas/{name}"} for name in schemas]
    schema = refs[0] if len(refs) == 1 else {"anyOf": refs}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# ---- API version --------------------------------------------------------------------------------------------
def public_path(api_version: int) -> str:
    """The public resource path of API major `api_version` (ml_constructs/prediction_api.py builds the same)."""
    return f"/v{api_version}/predict"


def configured_api_version(cdk_json: Path = CDK_JSON) -> int:
    """cdk.json's api.version (ml-platform.defaults.api, overridden per environment), the same in every environment:
    one contract serves them all, and the pipeline promotes one build through them."""
    from platform_config import CONTEXT_KEY, ApiSettings
    from platform_config.loader import ConfigError, build, deep_merge

    context = orjson.loads(cdk_json.read_bytes())["context"][CONTEXT_KEY]
    default = context.get("defaults", {}).get("api", {})
    versions = {}
    for name, env in context["environments"].items():
        key = f"{CONTEXT_KEY}.environments.{name}.api"
        versions[key] = build(ApiSettings, deep_merge(default, env.get("api", {})), key).version
    if len(set(versions.values())) > 1:
        listed = ", ".join(f"{key}.version = {version}" for key, version in versions.items())
        raise ConfigError(
            next(f"{key}.version" for key, version in versions.items() if version != max(versions.values())),
            f"differs between environments ({listed}); one contract serves them all: "
            f"set {CONTEXT_KEY}.defaults.api.version and no per-environment api.version",
        )
    return next(iter(versions.values()))


# ---- documents ----------------------------------------------------------------------------------------------
TASK_NAMES = {BINARY: "binary classifier", MULTICLASS: "multiclass classifier"}


def what_it_answers(card: ModelCard) -> str:
    if card.task == BINARY:
        positive = card.positive_label or 0
        return (
            f"each row gets a label ({_classes(card)}) and the probability of label {positive} "
            f"({card.label_names[positive]})"
        )
    if card.task == MULTICLASS:
        return f"each row gets a label, the most probable class ({_classes(card)}), and a probability per class name"
    return f"each row gets a value, {target_text(card)}"


def api_description(card: ModelCard) -> str:
    about = str(card.raw.get("description") or "").strip().rstrip(".")
    return (
        (f"{about}. " if about else "") + f"Serves {card.name} {card.version}, a "
        f"{TASK_NAMES.get(card.task, 'regression model')} of {card.width} numeric features (names and ranges: "
        f"PredictRequest): {what_it_answers(card)}. At most {card.max_batch_rows} rows per request. Generated from the "
        f"model card (metadata.json) by {REGENERATE}."
    )


def openapi(card: ModelCard, api_version: int) -> dict[str, Any]:
    """OpenAPI 3.0 for consumers of the public API: POST /v{api_version}/predict behind API Gateway."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"{card.name} prediction API",
            # Semantic versioning of the API, not of the model: the major is api.version (cdk.json), the path's /vN/.
            "version": f"{api_version}.0.0",
            "description": api_description(card),
        },
        "security": [{"apiKey": []}],
        "paths": {
            public_path(api_version): {
                "post": {
                    "operationId": "predict",
                    "summary": "Score one or more rows",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PredictRequest"},
                                "examples": examples(card),
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One prediction per input row",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}
                            },
                        },
                        "400": error_response(
                            "Invalid body (gateway request validation or container checks)",
                            "ContainerError",
                            "GatewayError",
                        ),
                        "403": error_response("Missing or invalid API key", "GatewayError"),
                        "413": error_response("Body larger than 6 MB", "ContainerError", "GatewayError"),
                        "415": error_response(
                            "Content type other than application/json", "ContainerError", "GatewayError"
                        ),
                        "429": error_response("Throttled: usage plan rate or quota exceeded", "GatewayError"),
                        "500": error_response("Model failure; quote request_id", "ContainerError", "GatewayError"),
                        "502": error_response("The endpoint returned an invalid response", "GatewayError"),
                        "504": error_response("The endpoint did not answer in time", "GatewayError"),
                    },
                }
            }
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
            "schemas": {
                "PredictRequest": openapi_request_schema(card),
                "PredictResponse": openapi_response_schema(card),
                "ContainerError": container_error_schema(card),
                "GatewayError": GATEWAY_ERROR_SCHEMA,
            },
        },
    }


CONTAINER_ERRORS = {
    "400": "Malformed body, wrong feature count, wrong type, non-finite or out-of-range value",
    "404": "Unknown path",
    "405": "Method not allowed",
    "406": "Accept excludes application/json",
    "408": "Body not received within SAGEMAKER_MODEL_SERVER_TIMEOUT",
    "413": "Body over 6 MB",
    "415": "Content type is not application/json or text/csv",
    "500": "Model failure",
    "503": "Model not loaded yet (or failed to load)",
}


def container_openapi(card: ModelCard) -> dict[str, Any]:
    """OpenAPI 3.0 of the container's SageMaker hosting interface (not exposed to API consumers)."""
    csv_example = ",".join(str(v) for v in example_row(card)) + "\n"
    return {
        "openapi": "3.0.3",
        # The container serves exactly one model: its document is versioned as the model card.
        "info": {"title": f"{card.name} model server (SageMaker hosting contract)", "version": card.version},
        "paths": {
            "/ping": {
                "get": {
                    "operationId": "ping",
                    "summary": "Health check",
                    "responses": {
                        "200": {"description": "Model loaded and warmed up; empty body"},
                        "503": {"description": "Not ready"},
                    },
                }
            },
            # Batch Transform only: asked once per job where CreateTransformJob leaves the tuning unset (SageMaker
            # Developer Guide, "Use Your Own Inference Code with Batch Transform", How Containers Serve Requests).
            # Container-only, like /ping: openapi.json and the API Gateway do not have it.
            EXECUTION_PARAMETERS_PATH: {
                "get": {
                    "operationId": "executionParameters",
                    "summary": "Batch Transform tuning (only with SAGEMAKER_BATCH=true)",
                    "description": "Answered only when SageMaker starts the image for a transform job "
                    "(SAGEMAKER_BATCH=true); a real-time endpoint answers 404.",
                    "responses": {
                        "200": {
                            "description": "Mini-batch tuning SageMaker applies where the job sets none",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ExecutionParameters"}}
                            },
                        },
                        **{code: error_response(CONTAINER_ERRORS[code], "ContainerError") for code in ("404", "405")},
                    },
                }
            },
            "/invocations": {
                "post": {
                    "operationId": "invoke",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PredictRequest"},
                                "examples": examples(card),
                            },
                            "text/csv": {
                                "schema": {
                                    "type": "string",
                                    "description": f"Header-less rows of {card.width} plain decimal numbers in "
                                    "feature order",
                                },
                                "example": csv_example,
                            },
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One prediction per input row",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}
                            },
                        },
                        **{code: error_response(text, "ContainerError") for code, text in CONTAINER_ERRORS.items()},
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "PredictRequest": openapi_request_schema(card),
                "PredictResponse": openapi_response_schema(card),
                "ContainerError": container_error_schema(card),
                "ExecutionParameters": EXECUTION_PARAMETERS_SCHEMA,
            }
        },
    }


def generated_files(card: ModelCard, api_version: int | None = None) -> dict[str, bytes]:
    """The generated documents of `card` for API major `api_version` (default: api.version in cdk.json)."""
    api_version = configured_api_version() if api_version is None else api_version
    documents = {
        "request.schema.json": request_schema(card),
        "response.schema.json": response_schema(card),
        "openapi.json": openapi(card, api_version),
        "container-openapi.json": container_openapi(card),
    }
    return {name: orjson.dumps(copy.deepcopy(doc), option=JSON_OPTIONS) for name, doc in documents.items()}


# ---- manifest -----------------------------------------------------------------------------------------------
def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def manifest(card: ModelCard, outputs: dict[str, bytes], api_version: int) -> bytes:
    """generated-from.json: what the outputs were generated from, as hashes that synth compares (as data). The card
    is recorded by its contract fields, not by path: a package built elsewhere with the same fields has this
    contract, and retraining (new metrics, lineage, hashes) does not change it."""
    document = {
        "generator": REGENERATE,
        "api_version": api_version,
        "card": {"fields": card_field_digests(card.raw, CARD_FIELDS)},
        "inputs": {"generate.py": sha256(Path(__file__).read_bytes())},
        "outputs": {name: sha256(content) for name, content in outputs.items()},
    }
    return orjson.dumps(document, option=JSON_OPTIONS)


def contract_files(card_path: Path = DEFAULT_CARD, api_version: int | None = None) -> dict[str, bytes]:
    """Every generated file of the card at `card_path`, the manifest included, for API major `api_version`
    (default: api.version in cdk.json). Raises CardError naming the card field when the card does not fit."""
    api_version = configured_api_version() if api_version is None else api_version
    card = ModelCard.load(card_path)
    outputs = generated_files(card, api_version)
    return {**outputs, MANIFEST: manifest(card, outputs, api_version)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the API contract from the model card")
    parser.add_argument("--card", type=Path, default=DEFAULT_CARD, help="the model card (metadata.json or its dir)")
    parser.add_argument("--dir", type=Path, default=CONTRACT_DIR, help="where the contract files are written")
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are stale; write nothing")
    parser.add_argument(
        "--api-version", type=int, help="the API's major version (default: api.version in cdk.json, default 1)"
    )
    parser.add_argument("--cdk-json", type=Path, default=CDK_JSON, help="where api.version is read from")
    args = parser.parse_args(argv)
    try:
        api_version = args.api_version if args.api_version is not None else configured_api_version(args.cdk_json)
        if api_version < 1:
            parser.error(f"--api-version must be >= 1, got {api_version}")
        files = contract_files(args.card, api_version)
    except ValueError as error:  # ConfigError names the cdk.json key, CardError the card field
        print(f"generate: {error}", file=sys.stderr)
        return 2
    stale = [
        name
        for name, content in files.items()
        if not (args.dir / name).exists() or (args.dir / name).read_bytes() != content
    ]
    if args.check:
        for name in stale:
            print(f"stale: {args.dir / name} (run {REGENERATE})", file=sys.stderr)
        return 1 if stale else 0
    args.dir.mkdir(parents=True, exist_ok=True)
    for name in stale:  # unchanged files keep their mtime
        (args.dir / name).write_bytes(files[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())

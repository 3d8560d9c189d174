"""Generate the API contracts from feature_schema.json.

``python -m model_container.contract.generate`` writes, next to feature_schema.json:
- request.schema.json: the API Gateway request model (JSON Schema draft-04, self-contained);
- openapi.json: OpenAPI 3.0 for API consumers (POST /v{major}/predict behind API Gateway, info.version
  "{major}.0.0", the major being cdk.json's api.version);
- container-openapi.json: OpenAPI 3.0 of the serving container itself (POST /invocations, GET /ping and, for
  Batch Transform, GET /execution-parameters);
- generated-from.json: the SHA-256 of the inputs (feature_schema.json, this file) and of each output, so that
  synth can refuse a stale contract by comparing hashes, without importing this module (stacks/app_builder.py),
  and the api_version it was generated for (synth refuses a contract of another version than api.version:
  ml_constructs/prediction_api.py).
``--check`` writes nothing and exits 1 if a committed file differs from a fresh generation.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import sys
from pathlib import Path
from typing import Any

import orjson

from model_container.contract import CONTRACT_DIR

CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"

JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
DRAFT_04 = "http://json-schema.org/draft-04/schema#"
# OpenAPI 3.0 has no positional (tuple) array items, so the array-row form there can only say "30
# numbers"; the per-position schemas ride along in this extension for tools that want them.
POSITIONAL_EXTENSION = "x-positional-items"
MANIFEST = "generated-from.json"
REGENERATE = "make contracts (python -m model_container.contract.generate)"


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


def feature_property(feature: dict[str, Any]) -> dict[str, Any]:
    return {"type": "number", "minimum": feature["minimum"], "maximum": feature["maximum"]}


def object_row(schema: dict[str, Any]) -> dict[str, Any]:
    features = schema["features"]
    return {
        "type": "object",
        "description": "One row as named features.",
        "properties": {f["name"]: feature_property(f) for f in features},
        "required": [f["name"] for f in features if f["required"]],
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


def request_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The draft-04 request model: API Gateway validates bodies with it before the endpoint sees them."""
    return {"$schema": DRAFT_04, "title": "PredictRequest", **instances_body(schema, array_row_draft4(schema))}


def openapi_request_schema(schema: dict[str, Any]) -> dict[str, Any]:
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


def examples(schema: dict[str, Any]) -> dict[str, Any]:
    midpoints = [round((f["training_min"] + f["training_max"]) / 2, 4) for f in schema["features"]]
    named = dict(zip((f["name"] for f in schema["features"]), midpoints, strict=True))
    return {
        "arrays": {"summary": "Rows as arrays in feature order", "value": {"instances": [midpoints]}},
        "objects": {"summary": "Rows as named features", "value": {"instances": [named]}},
    }


PREDICTION_SCHEMA = {
    "type": "object",
    "description": "Flat predictions, one object per input row in input order. Model Monitor / drift checks "
    "read predictions[*].probability and predictions[*].label.",
    "required": ["predictions"],
    "additionalProperties": False,
    "properties": {
        "predictions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label", "probability", "model_version"],
                "additionalProperties": False,
                "properties": {
                    "label": {"type": "integer", "enum": [0, 1], "description": "1 = malignant, 0 = benign"},
                    "probability": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1,
                        "description": "probability of label 1 (malignant), 6 decimals",
                    },
                    "model_version": {"type": "string", "example": "1.0.0"},
                },
            },
        }
    },
    "example": {"predictions": [{"label": 1, "probability": 0.973214, "model_version": "1.0.0"}]},
}


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


CONTAINER_ERROR_SCHEMA = error_schema(
    "Error raised by the model container. row (0-based) and field name the first offending value.",
    {
        "code": "out_of_range",
        "message": "row 0 feature 'mean_radius' = 99 is outside [0, 37.29]",
        "request_id": "3f2a9c1e-17",
        "row": 0,
        "field": "mean_radius",
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


def openapi(schema: dict[str, Any], api_version: int) -> dict[str, Any]:
    """OpenAPI 3.0 for consumers of the public API: POST /v{api_version}/predict behind API Gateway."""
    request = openapi_request_schema(schema)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Breast cancer classifier API",
            # Semantic versioning of the API, not of the model: the major is api.version (cdk.json), the path's /vN/.
            "version": f"{api_version}.0.0",
            "description": "Predicts whether a tumour is malignant from 30 numeric features. Feature ranges "
            "come from model_container/contract/feature_schema.json.",
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
                                "examples": examples(schema),
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
                "PredictRequest": request,
                "PredictResponse": PREDICTION_SCHEMA,
                "ContainerError": CONTAINER_ERROR_SCHEMA,
                "GatewayError": GATEWAY_ERROR_SCHEMA,
            },
        },
    }


def container_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0 of the container's SageMaker hosting interface (not exposed to API consumers)."""
    csv_example = ",".join(str(v) for v in examples(schema)["arrays"]["value"]["instances"][0]) + "\n"
    errors = {
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
    return {
        "openapi": "3.0.3",
        "info": {"title": "Model server (SageMaker hosting contract)", "version": "1.0.0"},
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
                        **{code: error_response(errors[code], "ContainerError") for code in ("404", "405")},
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
                                "examples": examples(schema),
                            },
                            "text/csv": {
                                "schema": {
                                    "type": "string",
                                    "description": "Header-less rows of 30 plain decimal numbers in feature order",
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
                        **{code: error_response(text, "ContainerError") for code, text in errors.items()},
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "PredictRequest": openapi_request_schema(schema),
                "PredictResponse": PREDICTION_SCHEMA,
                "ContainerError": CONTAINER_ERROR_SCHEMA,
                "ExecutionParameters": EXECUTION_PARAMETERS_SCHEMA,
            }
        },
    }


def generated_files(schema: dict[str, Any], api_version: int | None = None) -> dict[str, bytes]:
    """The generated documents of `schema` for API major `api_version` (default: api.version in cdk.json)."""
    api_version = configured_api_version() if api_version is None else api_version
    documents = {
        "request.schema.json": request_schema(schema),
        "openapi.json": openapi(schema, api_version),
        "container-openapi.json": container_openapi(schema),
    }
    return {name: orjson.dumps(copy.deepcopy(doc), option=JSON_OPTIONS) for name, doc in documents.items()}


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def manifest(inputs: dict[str, bytes], outputs: dict[str, bytes], api_version: int) -> bytes:
    """generated-from.json: what the outputs were generated from, as hashes that synth compares (as data)."""
    document = {
        "generator": REGENERATE,
        "api_version": api_version,
        "inputs": {name: sha256(content) for name, content in inputs.items()},
        "outputs": {name: sha256(content) for name, content in outputs.items()},
    }
    return orjson.dumps(document, option=JSON_OPTIONS)


def contract_files(directory: Path, api_version: int | None = None) -> dict[str, bytes]:
    """Every generated file of `directory` (its feature_schema.json as input), the manifest included, for API major
    `api_version` (default: api.version in cdk.json)."""
    api_version = configured_api_version() if api_version is None else api_version
    schema_bytes = (directory / "feature_schema.json").read_bytes()
    outputs = generated_files(orjson.loads(schema_bytes), api_version)
    inputs = {"feature_schema.json": schema_bytes, "generate.py": Path(__file__).read_bytes()}
    return {**outputs, MANIFEST: manifest(inputs, outputs, api_version)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate API contracts from feature_schema.json")
    parser.add_argument("--dir", type=Path, default=CONTRACT_DIR)
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are stale; write nothing")
    parser.add_argument(
        "--api-version", type=int, help="the API's major version (default: api.version in cdk.json, default 1)"
    )
    parser.add_argument("--cdk-json", type=Path, default=CDK_JSON, help="where api.version is read from")
    args = parser.parse_args(argv)
    try:
        api_version = args.api_version if args.api_version is not None else configured_api_version(args.cdk_json)
    except ValueError as error:  # ConfigError names the cdk.json key
        print(f"generate: {error}", file=sys.stderr)
        return 2
    if api_version < 1:
        parser.error(f"--api-version must be >= 1, got {api_version}")
    files = contract_files(args.dir, api_version)
    stale = [
        name
        for name, content in files.items()
        if not (args.dir / name).exists() or (args.dir / name).read_bytes() != content
    ]
    if args.check:
        for name in stale:
            print(f"stale: {args.dir / name} (run {REGENERATE})", file=sys.stderr)
        return 1 if stale else 0
    for name in stale:  # unchanged files keep their mtime
        (args.dir / name).write_bytes(files[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())

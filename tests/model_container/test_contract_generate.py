"""Generated contracts: no drift from feature_schema.json, valid documents, and agreement of all validators."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator

from model_container.contract import CONTRACT_DIR, FEATURE_SCHEMA_PATH, load_feature_schema
from model_container.contract.generate import POSITIONAL_EXTENSION, configured_api_version, generated_files, main
from model_container.server.validation import FeatureValidator, RequestError

ROOT = Path(__file__).resolve().parents[2]

SCHEMA = load_feature_schema()
NAMES = [f["name"] for f in SCHEMA["features"]]
MID = [round((f["training_min"] + f["training_max"]) / 2, 4) for f in SCHEMA["features"]]


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((CONTRACT_DIR / name).read_text())
    return document


def with_value(index: int, value: Any) -> list[Any]:
    row: list[Any] = list(MID)
    row[index] = value
    return row


def named(row: list[Any]) -> dict[str, Any]:
    return dict(zip(NAMES, row, strict=True))


VALID = {
    "one array row": {"instances": [MID]},
    "one object row": {"instances": [named(MID)]},
    "mixed rows": {"instances": [MID, named(MID)]},
    "integer value": {"instances": [with_value(3, int(MID[3]))]},
    "at minimum": {"instances": [with_value(0, SCHEMA["features"][0]["minimum"])]},
    "at maximum": {"instances": [with_value(3, SCHEMA["features"][3]["maximum"])]},
    "batch at cap": {"instances": [MID] * SCHEMA["max_batch_rows"]},
}
# name -> (document, error code the container reports)
INVALID: dict[str, tuple[Any, str]] = {
    "not an object": ([MID], "invalid_body"),
    "missing instances": ({"rows": [MID]}, "missing_field"),
    "extra top-level field": ({"instances": [MID], "extra": 1}, "unknown_field"),
    "instances not an array": ({"instances": named(MID)}, "invalid_body"),
    "empty batch": ({"instances": []}, "empty_batch"),
    "over the batch cap": ({"instances": [MID] * (SCHEMA["max_batch_rows"] + 1)}, "too_many_rows"),
    "row of 29": ({"instances": [MID[:-1]]}, "wrong_feature_count"),
    "row of 31": ({"instances": [[*MID, 1.0]]}, "wrong_feature_count"),
    "row is a number": ({"instances": [1.0]}, "invalid_row"),
    "string value": ({"instances": [with_value(2, "12.0")]}, "wrong_type"),
    "boolean value": ({"instances": [with_value(2, True)]}, "wrong_type"),
    "null value": ({"instances": [with_value(2, None)]}, "wrong_type"),
    "nested array value": ({"instances": [with_value(2, [1.0])]}, "wrong_type"),
    "below minimum (array)": ({"instances": [with_value(0, -1.0)]}, "out_of_range"),
    "above maximum (array)": ({"instances": [with_value(5, 1e6)]}, "out_of_range"),
    "above maximum (object)": ({"instances": [named(with_value(5, 1e6))]}, "out_of_range"),
    "huge integer": ({"instances": [with_value(7, 10**40)]}, "out_of_range"),
    "missing feature": ({"instances": [{k: v for k, v in named(MID).items() if k != "mean_area"}]}, "missing_field"),
    "unknown feature": ({"instances": [{**named(MID), "colour": 1}]}, "unknown_field"),
    "boolean in object": ({"instances": [named(with_value(1, False))]}, "wrong_type"),
    "second row bad": ({"instances": [MID, with_value(4, "x")]}, "wrong_type"),
}
# What OpenAPI 3.0 cannot express (per-position ranges of array rows) without its extension.
POSITIONAL_ONLY = {"below minimum (array)", "above maximum (array)", "huge integer"}


def openapi_request_schema(apply_extension: bool) -> dict[str, Any]:
    schema = copy.deepcopy(load("openapi.json")["components"]["schemas"]["PredictRequest"])
    if apply_extension:
        for row in schema["properties"]["instances"]["items"]["anyOf"]:
            if POSITIONAL_EXTENSION in row:
                row["items"] = row.pop(POSITIONAL_EXTENSION)
                row["additionalItems"] = False
    return schema


def server_accepts(document: Any) -> bool:
    try:
        FeatureValidator(SCHEMA).from_json(json.dumps(document).encode())
    except RequestError:
        return False
    return True


def test_generated_files_are_committed_and_fresh() -> None:
    for name, content in generated_files(SCHEMA, configured_api_version()).items():
        assert (CONTRACT_DIR / name).read_bytes() == content, f"{name} is stale: run the generator"
    assert main(["--check"]) == 0


def test_check_mode_reports_drift(tmp_path) -> None:
    (tmp_path / "feature_schema.json").write_bytes(FEATURE_SCHEMA_PATH.read_bytes())
    assert main(["--dir", str(tmp_path), "--check"]) == 1
    assert main(["--dir", str(tmp_path)]) == 0
    assert main(["--dir", str(tmp_path), "--check"]) == 0


def test_request_schema_is_self_contained_draft4() -> None:
    schema = load("request.schema.json")
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    Draft4Validator.check_schema(schema)
    assert "$ref" not in json.dumps(schema)
    instances = schema["properties"]["instances"]
    assert instances["minItems"] == 1 and instances["maxItems"] == SCHEMA["max_batch_rows"]
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("name", sorted(VALID))
def test_all_validators_accept(name: str) -> None:
    document = VALID[name]
    assert Draft4Validator(load("request.schema.json")).is_valid(document)
    assert Draft4Validator(openapi_request_schema(apply_extension=False)).is_valid(document)
    assert Draft4Validator(openapi_request_schema(apply_extension=True)).is_valid(document)
    assert server_accepts(document)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_all_validators_reject(name: str) -> None:
    document, code = INVALID[name]
    assert not Draft4Validator(load("request.schema.json")).is_valid(document)
    assert not Draft4Validator(openapi_request_schema(apply_extension=True)).is_valid(document)
    plain_openapi = Draft4Validator(openapi_request_schema(apply_extension=False)).is_valid(document)
    assert plain_openapi is (name in POSITIONAL_ONLY)  # the documented OpenAPI 3.0 gap, and only it
    with pytest.raises(RequestError) as error:
        FeatureValidator(SCHEMA).from_json(json.dumps(document).encode())
    assert error.value.status == 400 and error.value.code == code


def test_openapi_documents_the_public_api() -> None:
    document = load("openapi.json")
    assert document["openapi"].startswith("3.0")
    operation = document["paths"]["/v1/predict"]["post"]
    assert set(operation["responses"]) == {"200", "400", "403", "413", "415", "429", "500", "502", "504"}
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
    }
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    for example in examples.values():
        assert Draft4Validator(load("request.schema.json")).is_valid(example["value"])


def cdk_json_with(tmp_path: Path, defaults_api: dict[str, Any], **environment_api: dict[str, Any]) -> Path:
    """cdk.json with `defaults_api` as ml-platform.defaults.api and per-environment api sections."""
    document = json.loads((ROOT / "cdk.json").read_text())
    context = document["context"]["ml-platform"]
    context["defaults"]["api"] = defaults_api
    for name, api in environment_api.items():
        context["environments"][name]["api"] = api
    path = tmp_path / "cdk.json"
    path.write_text(json.dumps(document))
    return path


def test_api_version_in_cdk_json_drives_the_public_path_and_the_openapi_version(tmp_path: Path) -> None:
    (tmp_path / "feature_schema.json").write_bytes(FEATURE_SCHEMA_PATH.read_bytes())
    cdk_json = cdk_json_with(tmp_path, {"version": 2})
    assert main(["--dir", str(tmp_path), "--cdk-json", str(cdk_json)]) == 0
    document = json.loads((tmp_path / "openapi.json").read_text())
    assert document["info"]["version"] == "2.0.0" and set(document["paths"]) == {"/v2/predict"}
    assert json.loads((tmp_path / "generated-from.json").read_text())["api_version"] == 2
    # The committed contract (api.version 1) is stale against this cdk.json: --check says so.
    assert main(["--check", "--cdk-json", str(cdk_json)]) == 1


def test_environments_with_different_api_versions_fail_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "feature_schema.json").write_bytes(FEATURE_SCHEMA_PATH.read_bytes())
    cdk_json = cdk_json_with(tmp_path, {"version": 2}, dev={"version": 1})
    assert main(["--dir", str(tmp_path), "--cdk-json", str(cdk_json)]) == 2
    err = capsys.readouterr().err
    assert "ml-platform.environments.dev.api.version" in err and "ml-platform.defaults.api.version" in err
    assert not (tmp_path / "openapi.json").exists()


def test_container_openapi_documents_invocations_ping_and_execution_parameters() -> None:
    document = load("container-openapi.json")
    assert set(document["paths"]) == {"/invocations", "/ping", "/execution-parameters"}
    content = document["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "text/csv"}


# --- Defect 16: synth refuses a contract that is stale against the feature schema ---------------------------------
def test_generator_records_the_hashes_of_its_inputs_and_outputs() -> None:
    from model_container.contract.generate import MANIFEST, sha256

    manifest = load(MANIFEST)
    assert manifest["inputs"]["feature_schema.json"] == sha256(FEATURE_SCHEMA_PATH.read_bytes())
    assert set(manifest["outputs"]) == {"request.schema.json", "openapi.json", "container-openapi.json"}
    for name, digest in manifest["outputs"].items():
        assert sha256((CONTRACT_DIR / name).read_bytes()) == digest


def stale_copy(tmp_path: Path) -> Path:
    """A copy of the contract directory whose feature schema changed after generation (a range widened)."""
    directory = tmp_path / "contract"
    shutil.copytree(CONTRACT_DIR, directory, ignore=shutil.ignore_patterns("__pycache__"))
    schema = json.loads((directory / "feature_schema.json").read_text())
    schema["features"][0]["maximum"] *= 2
    (directory / "feature_schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    return directory


def test_synth_refuses_a_stale_contract_and_names_the_command(tmp_path: Path) -> None:
    from aws_cdk import App

    from stacks.app_builder import StaleContractError, build_stages, check_contract

    directory = stale_copy(tmp_path)
    app = App(context=json.loads((ROOT / "cdk.json").read_text())["context"])
    with pytest.raises(StaleContractError) as raised:
        build_stages(app, default_account="123456789012", default_region=None, contract_dir=directory)
    assert "feature_schema.json changed" in str(raised.value)
    assert "make contracts" in str(raised.value) and "python -m model_container.contract.generate" in str(raised.value)
    assert not app.node.children
    assert main(["--dir", str(directory), "--check"]) == 1
    assert main(["--dir", str(directory)]) == 0  # what `make contracts` runs
    check_contract(directory)


def test_synth_refuses_a_generated_file_edited_by_hand(tmp_path: Path) -> None:
    from model_container.contract.generate import MANIFEST
    from stacks.app_builder import StaleContractError, check_contract

    directory = tmp_path / "contract"
    shutil.copytree(CONTRACT_DIR, directory, ignore=shutil.ignore_patterns("__pycache__"))
    check_contract(directory)
    (directory / "request.schema.json").write_text("{}\n")
    with pytest.raises(StaleContractError, match=r"request\.schema\.json differs from what the generator wrote"):
        check_contract(directory)
    (directory / MANIFEST).unlink()
    with pytest.raises(StaleContractError, match="make contracts"):
        check_contract(directory)


def test_infrastructure_reads_the_contract_without_importing_runtime_modules() -> None:
    code = "import sys, stacks.app_builder; print([m for m in sys.modules if m.startswith('model_container')])"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("target", ["synth", "model"])
def test_make_regenerates_the_contract_after_the_model_build_and_before_synth(target: str) -> None:
    commands = subprocess.run(
        ["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    generate = commands.index(".venv/bin/python -m model_container.contract.generate")
    assert commands.index(".venv/bin/python -m model_container.build_model --out model_container/dist") < generate
    if target == "synth":
        assert generate < next(i for i, c in enumerate(commands) if c.startswith("npx cdk synth"))


# --- GET /execution-parameters: in the container's contract, not in the API's (issue 18) -------------------------
EXECUTION_PARAMETERS = "/execution-parameters"


@pytest.mark.parametrize(
    "env",
    [
        {"SAGEMAKER_BATCH": "true"},
        {"SAGEMAKER_BATCH": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "8", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100"},
        {"SAGEMAKER_BATCH": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"},
    ],
)
def test_the_container_contract_describes_the_execution_parameters_the_batch_server_answers(
    env: dict[str, str],
) -> None:
    from jsonschema import Draft7Validator

    from model_container.server.batch import execution_parameters
    from model_container.server.config import ServerConfig

    document = load("container-openapi.json")
    operation = document["paths"][EXECUTION_PARAMETERS]["get"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    answer = execution_parameters(ServerConfig.from_env(env))
    Draft7Validator(schema).validate(answer)  # OpenAPI 3.0 schema objects are a JSON Schema subset
    assert set(schema["properties"]) == set(answer) == set(schema["required"])  # nothing undocumented, nothing extra
    assert set(operation["responses"]) == {"200", "404", "405"}


def test_the_api_contract_does_not_expose_execution_parameters() -> None:
    """A container-only route, like /ping: neither the consumers' OpenAPI nor the gateway's model mentions it."""
    assert EXECUTION_PARAMETERS not in load("openapi.json")["paths"]
    for name in ("openapi.json", "request.schema.json"):
        assert "execution-parameters" not in (CONTRACT_DIR / name).read_text()
        assert "ExecutionParameters" not in (CONTRACT_DIR / name).read_text()

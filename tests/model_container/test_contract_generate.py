"""Generated contracts of the default model card: no drift from the card, valid documents, agreement of all
validators, and synth refusing a contract stale against the card."""

from __future__ import annotations

import copy
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator

from model_container.card import ModelCard
from model_container.contract import CONTRACT_DIR, DEFAULT_CARD
from model_container.contract.generate import POSITIONAL_EXTENSION, configured_api_version, generated_files, main
from model_container.server.validation import FeatureValidator, RequestError

ROOT = Path(__file__).resolve().parents[2]

CARD = ModelCard.load(DEFAULT_CARD)
SCHEMA = CARD.feature_schema
FEATURES = SCHEMA["features"]
NAMES = CARD.feature_names
WIDTH = CARD.width
MID = [round((f["training_min"] + f["training_max"]) / 2, 4) for f in FEATURES]
LAST = WIDTH - 1
# A feature whose accepted range holds an integer (for the "integer value" case), and its smallest such integer.
INTEGER_AT, INTEGER = next(
    (i, math.ceil(f["minimum"])) for i, f in enumerate(FEATURES) if math.ceil(f["minimum"]) <= f["maximum"]
)


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((CONTRACT_DIR / name).read_text())
    return document


def with_value(index: int, value: Any) -> list[Any]:
    row: list[Any] = list(MID)
    row[index] = value
    return row


def named(row: list[Any]) -> dict[str, Any]:
    return dict(zip(NAMES, row, strict=True))


def above(index: int) -> float:
    feature = FEATURES[index]
    return feature["maximum"] + (feature["maximum"] - feature["minimum"])


def below(index: int) -> float:
    feature = FEATURES[index]
    return feature["minimum"] - (feature["maximum"] - feature["minimum"])


VALID = {
    "one array row": {"instances": [MID]},
    "one object row": {"instances": [named(MID)]},
    "mixed rows": {"instances": [MID, named(MID)]},
    "integer value": {"instances": [with_value(INTEGER_AT, INTEGER)]},
    "at minimum": {"instances": [with_value(0, FEATURES[0]["minimum"])]},
    "at maximum": {"instances": [with_value(LAST, FEATURES[LAST]["maximum"])]},
    "batch at cap": {"instances": [MID] * CARD.max_batch_rows},
}
# name -> (document, error code the container reports)
INVALID: dict[str, tuple[Any, str]] = {
    "not an object": ([MID], "invalid_body"),
    "missing instances": ({"rows": [MID]}, "missing_field"),
    "extra top-level field": ({"instances": [MID], "extra": 1}, "unknown_field"),
    "instances not an array": ({"instances": named(MID)}, "invalid_body"),
    "empty batch": ({"instances": []}, "empty_batch"),
    "over the batch cap": ({"instances": [MID] * (CARD.max_batch_rows + 1)}, "too_many_rows"),
    "row one short": ({"instances": [MID[:-1]]}, "wrong_feature_count"),
    "row one long": ({"instances": [[*MID, 1.0]]}, "wrong_feature_count"),
    "row is a number": ({"instances": [1.0]}, "invalid_row"),
    "string value": ({"instances": [with_value(LAST, "12.0")]}, "wrong_type"),
    "boolean value": ({"instances": [with_value(LAST, True)]}, "wrong_type"),
    "null value": ({"instances": [with_value(0, None)]}, "wrong_type"),
    "nested array value": ({"instances": [with_value(LAST, [1.0])]}, "wrong_type"),
    "below minimum (array)": ({"instances": [with_value(0, below(0))]}, "out_of_range"),
    "above maximum (array)": ({"instances": [with_value(LAST, above(LAST))]}, "out_of_range"),
    "above maximum (object)": ({"instances": [named(with_value(LAST, above(LAST)))]}, "out_of_range"),
    "huge integer": ({"instances": [with_value(INTEGER_AT, 10**40)]}, "out_of_range"),
    "missing feature": ({"instances": [{k: v for k, v in named(MID).items() if k != NAMES[LAST]}]}, "missing_field"),
    "unknown feature": ({"instances": [{**named(MID), "not_a_feature_of_the_card": 1}]}, "unknown_field"),
    "boolean in object": ({"instances": [named(with_value(0, False))]}, "wrong_type"),
    "second row bad": ({"instances": [MID, with_value(LAST, "x")]}, "wrong_type"),
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
    for name, content in generated_files(CARD, configured_api_version()).items():
        assert (CONTRACT_DIR / name).read_bytes() == content, f"{name} is stale: run the generator"
    assert main(["--check"]) == 0


def test_check_mode_reports_drift(tmp_path) -> None:
    assert main(["--dir", str(tmp_path), "--check"]) == 1
    assert main(["--dir", str(tmp_path)]) == 0
    assert main(["--dir", str(tmp_path), "--check"]) == 0
    assert main(["--dir", str(tmp_path), "--card", str(DEFAULT_CARD.parent), "--check"]) == 0  # a package dir


def test_request_schema_is_self_contained_draft4() -> None:
    schema = load("request.schema.json")
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    Draft4Validator.check_schema(schema)
    assert "$ref" not in json.dumps(schema)
    instances = schema["properties"]["instances"]
    assert instances["minItems"] == 1 and instances["maxItems"] == CARD.max_batch_rows
    assert schema["additionalProperties"] is False
    [array_row, object_row] = instances["items"]["anyOf"]
    assert array_row["minItems"] == array_row["maxItems"] == WIDTH
    assert list(object_row["properties"]) == NAMES == object_row["required"]


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
    major = configured_api_version()
    assert document["info"]["version"] == f"{major}.0.0"
    assert CARD.name in document["info"]["title"] and CARD.version in document["info"]["description"]
    operation = document["paths"][f"/v{major}/predict"]["post"]
    assert set(operation["responses"]) == {"200", "400", "403", "413", "415", "429", "500", "502", "504"}
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
    }
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    for example in examples.values():
        assert Draft4Validator(load("request.schema.json")).is_valid(example["value"])
    response = document["components"]["schemas"]["PredictResponse"]
    assert Draft4Validator(load("response.schema.json")).is_valid(response["example"])
    assert response["example"] == {"predictions": [CARD.response_example()]}


def test_the_container_error_example_is_the_containers_own_wording() -> None:
    """The documented out_of_range example is what the container answers for that value of the card's feature."""
    example = load("openapi.json")["components"]["schemas"]["ContainerError"]["example"]["error"]
    index = NAMES.index(example["field"])
    value = float(example["message"].split(" = ")[1].split(" ")[0])
    with pytest.raises(RequestError) as error:
        FeatureValidator(SCHEMA).from_json(json.dumps({"instances": [with_value(index, value)]}).encode())
    assert (error.value.code, error.value.message) == (example["code"], example["message"])


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
    major = configured_api_version() + 1
    cdk_json = cdk_json_with(tmp_path, {"version": major})
    assert main(["--dir", str(tmp_path), "--cdk-json", str(cdk_json)]) == 0
    document = json.loads((tmp_path / "openapi.json").read_text())
    assert document["info"]["version"] == f"{major}.0.0" and set(document["paths"]) == {f"/v{major}/predict"}
    assert json.loads((tmp_path / "generated-from.json").read_text())["api_version"] == major
    # The committed contract (the current api.version) is stale against this cdk.json: --check says so.
    assert main(["--check", "--cdk-json", str(cdk_json)]) == 1


def test_environments_with_different_api_versions_fail_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cdk_json = cdk_json_with(tmp_path, {"version": 2}, dev={"version": 1})
    assert main(["--dir", str(tmp_path), "--cdk-json", str(cdk_json)]) == 2
    err = capsys.readouterr().err
    assert "ml-platform.environments.dev.api.version" in err and "ml-platform.defaults.api.version" in err
    assert not (tmp_path / "openapi.json").exists()


def test_container_openapi_documents_invocations_ping_and_execution_parameters() -> None:
    document = load("container-openapi.json")
    assert set(document["paths"]) == {"/invocations", "/ping", "/execution-parameters"}
    assert document["info"]["version"] == CARD.version  # the container serves this one model
    content = document["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "text/csv"}
    assert f" {WIDTH} " in content["text/csv"]["schema"]["description"]
    assert content["text/csv"]["example"].count(",") == WIDTH - 1


# --- Synth refuses a contract that is stale against the model card ---------------------------------------------
def test_generator_records_the_hashes_of_the_card_and_of_its_outputs() -> None:
    from model_container.card import card_field_digests
    from model_container.contract.generate import CARD_FIELDS, DOCUMENTS, MANIFEST, sha256

    manifest = load(MANIFEST)
    assert manifest["card"]["fields"] == card_field_digests(CARD.raw, CARD_FIELDS)
    assert manifest["inputs"] == {"generate.py": sha256((CONTRACT_DIR / "generate.py").read_bytes())}
    assert set(manifest["outputs"]) == set(DOCUMENTS)
    for name, digest in manifest["outputs"].items():
        assert sha256((CONTRACT_DIR / name).read_bytes()) == digest


def contract_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the contract directory and of the card it was generated from."""
    directory = tmp_path / "contract"
    shutil.copytree(CONTRACT_DIR, directory, ignore=shutil.ignore_patterns("__pycache__"))
    card = tmp_path / "metadata.json"
    shutil.copyfile(DEFAULT_CARD, card)
    return directory, card


def edit_card(card: Path, edit: Any) -> None:
    raw = json.loads(card.read_text())
    edit(raw)
    card.write_text(json.dumps(raw, indent=2) + "\n")


def widen_first_range(raw: dict[str, Any]) -> None:
    raw["feature_schema"]["features"][0]["maximum"] *= 2


def rename_model(raw: dict[str, Any]) -> None:
    raw["model_name"] = "another-model"


def add_feature(raw: dict[str, Any]) -> None:
    from model_container.card import max_batch_rows

    schema = raw["feature_schema"]
    schema["features"].append({**schema["features"][0], "name": "one_more"})
    # a wider row fits fewer rows in the 6 MB body: the card that adds a feature lowers its cap with it
    schema["max_batch_rows"] = max_batch_rows(
        [f["name"] for f in schema["features"]],
        raw["task"],
        list(raw.get("labels", {}).values()),  # none: a regressor
    )


@pytest.mark.parametrize(
    ("edit", "field"),
    [(widen_first_range, "feature_schema"), (add_feature, "feature_schema"), (rename_model, "model_name")],
)
def test_synth_refuses_a_contract_stale_against_the_card_and_names_the_command(
    tmp_path: Path, edit: Any, field: str
) -> None:
    from aws_cdk import App

    from stacks.app_builder import StaleContractError, build_stages, check_contract

    directory, card = contract_copy(tmp_path)
    check_contract(directory, card)
    edit_card(card, edit)
    app = App(context=json.loads((ROOT / "cdk.json").read_text())["context"])
    with pytest.raises(StaleContractError) as raised:
        build_stages(app, default_account="123456789012", default_region=None, contract_dir=directory, model_card=card)
    message = str(raised.value)
    assert f"model card {card} changed" in message and f"field(s) {field}" in message
    assert "make contracts" in message and "python -m model_container.contract.generate" in message
    assert "make model" in message
    assert not app.node.children
    assert main(["--dir", str(directory), "--card", str(card), "--check"]) == 1
    assert main(["--dir", str(directory), "--card", str(card)]) == 0  # what `make contracts` runs
    check_contract(directory, card)


def test_fields_outside_the_contract_do_not_make_it_stale(tmp_path: Path) -> None:
    """Holdout metrics, lineage and hashes of the package change with every retraining; the contract does not."""
    from stacks.app_builder import check_contract

    directory, card = contract_copy(tmp_path)

    def retrain(raw: dict[str, Any]) -> None:
        raw["holdout_metrics"] = {"accuracy": 0.5}
        raw["content_sha256"] = "0" * 64
        raw["lineage"] = {"code_commit": "f" * 40}

    edit_card(card, retrain)
    check_contract(directory, card)


def test_synth_without_a_model_card_names_make_model(tmp_path: Path) -> None:
    from stacks.app_builder import StaleContractError, check_contract

    directory, card = contract_copy(tmp_path)
    card.unlink()
    with pytest.raises(StaleContractError, match=r"the model card .* is missing; run make model"):
        check_contract(directory, card)


def test_synth_refuses_a_generated_file_edited_by_hand(tmp_path: Path) -> None:
    from model_container.contract.generate import MANIFEST
    from stacks.app_builder import StaleContractError, check_contract

    directory, card = contract_copy(tmp_path)
    check_contract(directory, card)
    for name in ("request.schema.json", "response.schema.json"):
        original = (directory / name).read_bytes()
        (directory / name).write_text("{}\n")
        with pytest.raises(StaleContractError, match=rf"{name.replace('.', '[.]')} differs from what the generator"):
            check_contract(directory, card)
        (directory / name).write_bytes(original)
    (directory / MANIFEST).unlink()
    with pytest.raises(StaleContractError, match="make contracts"):
        check_contract(directory, card)


def test_a_manifest_of_the_feature_schema_era_is_refused_naming_the_command(tmp_path: Path) -> None:
    """A contract generated before the card was its input records no card: synth cannot vouch for it."""
    from model_container.contract.generate import MANIFEST
    from stacks.app_builder import StaleContractError, check_contract

    directory, card = contract_copy(tmp_path)
    manifest = json.loads((directory / MANIFEST).read_text())
    del manifest["card"]
    (directory / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(StaleContractError, match=r"does not record the model card.*make contracts"):
        check_contract(directory, card)


def test_a_card_that_does_not_fit_the_contract_fails_the_generator_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from model_container.card import max_batch_rows

    card = tmp_path / "metadata.json"
    limit = max_batch_rows(NAMES, CARD.task, CARD.label_names)
    card.write_text(json.dumps({**CARD.raw, "feature_schema": {**SCHEMA, "max_batch_rows": limit + 1}}))
    assert main(["--dir", str(tmp_path / "out"), "--card", str(card)]) == 2
    err = capsys.readouterr().err
    assert "feature_schema.max_batch_rows" in err and f"at most {limit}" in err and "6 MB" in err
    assert main(["--dir", str(tmp_path / "out"), "--card", str(tmp_path / "absent.json")]) == 2
    assert "make model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_infrastructure_reads_the_contract_without_importing_runtime_modules() -> None:
    """The app reads the contract as data; of model_container it may import only the card module (standard library
    only, made for the CDK app), never the generator or the serving code."""
    code = "import sys, stacks.app_builder; print([m for m in sys.modules if m.startswith('model_container')])"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert set(json.loads(result.stdout.replace("'", '"'))) <= {"model_container", "model_container.card"}


@pytest.mark.parametrize("target", ["synth", "model"])
def test_make_regenerates_the_contract_after_the_model_build_and_before_synth(target: str) -> None:
    commands = subprocess.run(
        ["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    generate = commands.index(".venv/bin/python -m model_container.contract.generate")
    build = next(i for i, c in enumerate(commands) if "model_container.build_model" in c)
    assert build < generate
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

"""The model registry step: every build registers a model package pending approval, the pipeline's model approval
(or the registry) approves or rejects it, and production refuses a package that is not Approved.

moto's SageMaker backs the registry (create_model_package_group, create_model_package, list_model_packages,
describe_model_package, update_model_package); moto ignores what it does not model (ModelCard, ClientToken), so
the full CreateModelPackage request is checked against botocore's service model with a Stubber. CodePipeline is
a fake that answers GetPipelineState/GetPipelineExecution and records PutApprovalResult as the API reference
shapes them (GetPipelineState: stageStates[].latestExecution.pipelineExecutionId, actionStates[].latestExecution
{status, token, summary, lastUpdatedBy}).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from model_container.card import ModelCard
from scripts import register_model_package as rmp
from tests import model_packages

REGION, ACCOUNT, GROUP = "eu-west-1", "123456789012", "mlapi-models"
BUCKET = f"mlapi-prod-registry-{ACCOUNT}-{REGION}"  # ml_constructs/model_registry.py metrics_bucket_name
PIPELINE, STAGE, EXECUTION = "mlapi-pipeline-delivery", "prod", "6e4b6c33-0c0b-4c43-8e7a-1f1e1a6b3c11"
ACTIONS = ["DataScienceApproval", "OperationsApproval", "ProductApproval"]
SHA = hashlib.sha256(b"model.onnx").hexdigest()
DATA_SCIENTIST = "arn:aws:sts::123456789012:assumed-role/DataScientist/alice"
IMAGE_SUB = (
    "${AWS::AccountId}.dkr.ecr.eu-west-1.${AWS::URLSuffix}/cdk-hnb659fds-container-assets-${AWS::AccountId}-"
    "eu-west-1:e07d2f3529256fc34c3a717a5e275fd558b9fcc1ab33d89bfd079d920ae8c910"
)
DATA_SUB = "s3://cdk-hnb659fds-assets-${AWS::AccountId}-eu-west-1/5d86adc6662082c978c02e408c5fdccfc2843f5f.gz"
IMAGE = (
    f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/cdk-hnb659fds-container-assets-{ACCOUNT}-eu-west-1:"
    + "e07d2f35"
    + ("29256fc34c3a717a5e275fd558b9fcc1ab33d89bfd079d920ae8c910")
)
# CustomerMetadataMap keys and values (API reference): letters, digits, spaces and _.:/=+-@.
METADATA_VALUE = re.compile(r"[\w .:/=+\-@]{1,256}")
VERSION = "3.1.4"  # the version the test's template deploys (any semantic version)


def inference_template(model_hash: str = SHA[:16], commit: str = "abc123") -> dict[str, Any]:
    """The shape of the pipeline's synthesized prod inference template (CDK asset URIs as Fn::Sub)."""
    return {
        "Resources": {
            "Model": {
                "Type": "AWS::SageMaker::Model",
                "Properties": {
                    "PrimaryContainer": {
                        "Image": {"Fn::Sub": IMAGE_SUB},
                        "ModelDataUrl": {"Fn::Sub": DATA_SUB},
                        "Environment": {"MODEL_VERSION": VERSION, "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60"},
                    }
                },
            },
            "Config": {
                "Type": "AWS::SageMaker::EndpointConfig",
                "Properties": {
                    "EndpointConfigName": "mlapi-prod-endpoint-3-1-4-ab12cd34",
                    "ProductionVariants": [{"VariantName": "AllTraffic", "InstanceType": "ml.c6i.large"}],
                    "Tags": [
                        {"Key": "commit", "Value": commit},
                        {"Key": "model-hash", "Value": model_hash},
                        {"Key": "model-version", "Value": VERSION},
                    ],
                },
            },
        }
    }


def card_of(name: str = "breast_cancer") -> dict[str, Any]:
    return dict(ModelCard.load(model_packages.example_package(name)).raw)


def metadata(name: str = "breast_cancer", **extra: Any) -> dict[str, Any]:
    """An example's card as the gate passed it, for the model the test's template deploys."""
    return {**card_of(name), "model_version": VERSION, "content_sha256": SHA, **extra}


def gate_report(card: dict[str, Any]) -> dict[str, Any]:
    """What scripts/model_gate.py reports for a package that passed: its metrics and the card's acceptance."""
    return {
        "passed": True,
        "failures": [],
        "task": card.get("task", "binary_classification"),
        "holdout_metrics": {k: v for k, v in card["holdout_metrics"].items() if k != "rows"},
        "holdout_rows": card["holdout_metrics"]["rows"],
        "thresholds": card["acceptance"],
        "trigger": {"retraining": False, "reason": "source change"},
    }


GATE = gate_report(card_of())


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    assembly = tmp_path / "cdk.out" / "assembly-Pipeline-prod"
    assembly.mkdir(parents=True)
    (assembly / "PipelineprodInferenceBC6409D2.template.json").write_text(json.dumps(inference_template()))
    (tmp_path / "gate").mkdir()
    (tmp_path / "gate" / "metadata.json").write_text(json.dumps(metadata()))
    (tmp_path / "gate" / "model-gate.json").write_text(json.dumps(GATE))
    return tmp_path


def register_argv(root: Path, **overrides: str) -> list[str]:
    args = {
        "--region": REGION,
        "--account": ACCOUNT,
        "--group": GROUP,
        "--assembly": str(root / "cdk.out" / "assembly-Pipeline-prod"),
        "--metadata": str(root / "gate" / "metadata.json"),
        "--gate-report": str(root / "gate" / "model-gate.json"),
        "--metrics-bucket": BUCKET,
        "--arn-out": str(root / "model-package.arn"),
        **overrides,
    }
    return ["register", *[part for pair in args.items() for part in pair]]


class FakeCodePipeline:
    """GetPipelineState / GetPipelineExecution / PutApprovalResult of one execution of the prod stage."""

    def __init__(self, actions: dict[str, dict[str, Any]], trigger: dict[str, str] | None = None) -> None:
        self.actions, self.trigger, self.answers = actions, trigger or {}, []

    def get_pipeline_state(self, name: str) -> dict[str, Any]:
        assert name == PIPELINE
        return {
            "stageStates": [
                {
                    "stageName": STAGE,
                    "latestExecution": {"pipelineExecutionId": EXECUTION, "status": "InProgress"},
                    "actionStates": [{"actionName": n, "latestExecution": e} for n, e in self.actions.items()],
                }
            ]
        }

    def get_pipeline_execution(self, pipelineName: str, pipelineExecutionId: str) -> dict[str, Any]:
        assert (pipelineName, pipelineExecutionId) == (PIPELINE, EXECUTION)
        return {"pipelineExecution": {"pipelineExecutionId": EXECUTION, "trigger": self.trigger}}

    def put_approval_result(self, **request: Any) -> dict[str, Any]:
        self.answers.append(request)
        self.actions[request["actionName"]] = {"status": "Succeeded", "summary": request["result"]["summary"]}
        return {}


def pending(*names: str) -> dict[str, dict[str, Any]]:
    return {name: {"status": "InProgress", "token": f"token-{name}"} for name in names}


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto's registry and metrics bucket; boto3.Session.client('codepipeline') returns the test's fake."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        fake: dict[str, FakeCodePipeline] = {}
        real_client = boto3.Session.client

        def client(self: boto3.Session, name: str, *args: Any, **kwargs: Any) -> Any:
            return fake["codepipeline"] if name == "codepipeline" else real_client(self, name, *args, **kwargs)

        monkeypatch.setattr(boto3.Session, "client", client)
        sagemaker.fake = fake
        yield sagemaker


def approval_argv(command: str, arn: str) -> list[str]:
    return [
        command, "--region", REGION, "--pipeline", PIPELINE, "--stage", STAGE, "--execution-id", EXECUTION,
        "--package-arn", arn, "--action", "DataScienceApproval", "--wait-attempts", "1", "--wait-seconds", "0",
    ]  # fmt: skip


def check_argv(arn: str, root: Path) -> list[str]:
    assembly = str(root / "cdk.out" / "assembly-Pipeline-prod")
    return ["check", "--region", REGION, "--account", ACCOUNT, "--package-arn", arn, "--assembly", assembly]


def register(root: Path, capsys: pytest.CaptureFixture[str], **overrides: str) -> dict[str, Any]:
    assert rmp.main(register_argv(root, **overrides)) == 0
    return json.loads(capsys.readouterr().out)


# ---- scenarios ---------------------------------------------------------------------------------------------
def test_register_then_approve_then_the_deploy_check_passes(registry, build_dir, capsys) -> None:
    registered = register(build_dir, capsys)
    arn = registered["package"]
    assert registered["created"] is True and (build_dir / "model-package.arn").read_text().strip() == arn
    package = registry.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["ModelPackageGroupName"] == GROUP
    [container] = package["InferenceSpecification"]["Containers"]
    # The package points at what production deploys: the CDK asset URIs, resolved for production's account.
    assert container["Image"] == IMAGE
    assert container["ModelDataUrl"] == DATA_SUB.replace("${AWS::AccountId}", ACCOUNT)
    properties = package["CustomerMetadataProperties"]
    assert properties["build"] == f"abc123:{SHA}"
    assert properties["holdout-roc_auc"] == str(GATE["holdout_metrics"]["roc_auc"])
    assert package["MetadataProperties"]["CommitId"] == "abc123"
    statistics = package["ModelMetrics"]["ModelQuality"]["Statistics"]
    bucket, key = statistics["S3Uri"].removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3", region_name=REGION)
    report = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    metrics = json.loads(report)["binary_classification_metrics"]
    assert metrics["auc"]["value"] == GATE["holdout_metrics"]["roc_auc"]
    assert statistics["ContentDigest"] == "sha256:" + hashlib.sha256(report).hexdigest()
    # The gate's whole report is kept beside the statistics.
    gate = s3.get_object(Bucket=bucket, Key=key.replace("model-quality.json", "model-gate.json"))["Body"].read()
    assert json.loads(gate) == GATE

    # Before any approval, production refuses the package.
    assert rmp.main(check_argv(arn, build_dir)) == 1
    assert "PendingManualApproval, not Approved: production refuses it" in capsys.readouterr().err

    # The data scientist approves the pipeline's model approval; the package records who, from the result.
    registry.fake["codepipeline"] = FakeCodePipeline(
        {"DataScienceApproval": {"status": "Succeeded", "lastUpdatedBy": DATA_SCIENTIST, "summary": "AUC fine"}}
    )
    assert rmp.main(approval_argv("approve", arn)) == 0
    approved = registry.describe_model_package(ModelPackageName=arn)
    assert approved["ModelApprovalStatus"] == "Approved"
    assert approved["ApprovalDescription"] == (
        f"[pipeline] DataScienceApproval approved by {DATA_SCIENTIST} in {PIPELINE} execution {EXECUTION}: AUC fine"
    )
    capsys.readouterr()
    assert rmp.main(check_argv(arn, build_dir)) == 0
    assert json.loads(capsys.readouterr().out)["deployable"].startswith(f"model package {arn} is Approved")


def test_rejected_in_the_registry_answers_the_waiting_approval_and_stops_the_run(registry, build_dir, capsys) -> None:
    arn = register(build_dir, capsys)["package"]
    registry.update_model_package(
        ModelPackageArn=arn, ModelApprovalStatus="Rejected", ApprovalDescription="recall too low on new clinic data"
    )
    codepipeline = registry.fake["codepipeline"] = FakeCodePipeline(pending(*ACTIONS))
    assert rmp.main(approval_argv("registry-decision", arn)) == 0
    [answer] = codepipeline.answers
    assert (answer["actionName"], answer["token"], answer["result"]["status"]) == (
        "DataScienceApproval",
        "token-DataScienceApproval",
        "Rejected",
    )
    assert "recall too low on new clinic data" in answer["result"]["summary"]
    capsys.readouterr()
    # Were the approval approved anyway, the approval step and the deploy check both refuse: the run stops.
    codepipeline.actions["DataScienceApproval"] = {"status": "Succeeded", "lastUpdatedBy": DATA_SCIENTIST}
    assert rmp.main(approval_argv("approve", arn)) == 1
    assert "REFUSED model package" in capsys.readouterr().err
    assert rmp.main(check_argv(arn, build_dir)) == 1
    assert "is Rejected, not Approved: production refuses it" in capsys.readouterr().err


def test_a_pending_package_leaves_the_model_approval_to_the_reviewers(registry, build_dir, capsys) -> None:
    arn = register(build_dir, capsys)["package"]
    codepipeline = registry.fake["codepipeline"] = FakeCodePipeline(pending(*ACTIONS))
    assert rmp.main(approval_argv("registry-decision", arn)) == 0
    assert codepipeline.answers == []
    assert json.loads(capsys.readouterr().out)["reason"] == "pending: left for the reviewers"


def test_approved_in_the_registry_answers_the_run_that_registered_the_same_build(registry, build_dir, capsys) -> None:
    arn = register(build_dir, capsys)["package"]
    registry.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="ok: bob")
    codepipeline = registry.fake["codepipeline"] = FakeCodePipeline(pending(*ACTIONS))
    assert rmp.main(approval_argv("registry-decision", arn)) == 0
    [answer] = codepipeline.answers
    assert answer["result"]["status"] == "Approved" and answer["result"]["summary"].startswith("Approved in the model")
    # The approval step keeps the registry's decision and its description.
    assert rmp.main(approval_argv("approve", arn)) == 0
    assert registry.describe_model_package(ModelPackageName=arn)["ApprovalDescription"] == "ok: bob"


def test_a_retried_registration_returns_the_existing_package(registry, build_dir, capsys) -> None:
    first = register(build_dir, capsys)
    again = register(build_dir, capsys)
    assert (again["package"], again["created"]) == (first["package"], False)
    # Still the same package once it is approved (the approval keeps the build's metadata properties).
    registry.fake["codepipeline"] = FakeCodePipeline(
        {"DataScienceApproval": {"status": "Succeeded", "lastUpdatedBy": DATA_SCIENTIST, "summary": "ok"}}
    )
    assert rmp.main(approval_argv("approve", first["package"])) == 0
    capsys.readouterr()
    assert register(build_dir, capsys)["package"] == first["package"]
    listed = registry.list_model_packages(ModelPackageGroupName=GROUP, ModelPackageType="Versioned")
    assert len(listed["ModelPackageSummaryList"]) == 1
    # Another commit of the same model bytes is another build: a second version.
    template = build_dir / "cdk.out" / "assembly-Pipeline-prod" / "PipelineprodInferenceBC6409D2.template.json"
    template.write_text(json.dumps(inference_template(commit="def456")))
    second = register(build_dir, capsys)
    assert second["created"] is True and second["package"] != first["package"]


def test_emergency_override_needs_a_person_and_a_reason_and_answers_every_approval(registry, capsys) -> None:
    person = "arn:aws:sts::123456789012:assumed-role/Operations/oncall"
    codepipeline = registry.fake["codepipeline"] = FakeCodePipeline(
        pending(*ACTIONS), {"triggerType": "StartPipelineExecution", "triggerDetail": person}
    )
    argv = [
        "override", "--region", REGION, "--pipeline", PIPELINE, "--stage", STAGE, "--execution-id", EXECUTION,
        "--actions", ",".join(ACTIONS), "--wait-attempts", "1", "--wait-seconds", "0", "--override", "true",
    ]  # fmt: skip
    assert rmp.main([*argv, "--reason", "none"]) == 1
    assert "needs EMERGENCY_REASON" in capsys.readouterr().err
    assert codepipeline.answers == []
    assert rmp.main([*argv, "--reason", "CVE-2026-1234 hotfix, INC-981"]) == 0
    assert [a["actionName"] for a in codepipeline.answers] == ACTIONS
    assert {a["result"]["summary"] for a in codepipeline.answers} == {
        f"EMERGENCY OVERRIDE by {person}: CVE-2026-1234 hotfix, INC-981"
    }
    codepipeline = registry.fake["codepipeline"] = FakeCodePipeline(pending(*ACTIONS), {"triggerType": "Webhook"})
    assert rmp.main([*argv, "--reason", "CVE-2026-1234 hotfix, INC-981"]) == 1
    assert "must be started by a person" in capsys.readouterr().err and codepipeline.answers == []


def test_no_override_requested_changes_nothing(registry, capsys) -> None:
    codepipeline = registry.fake["codepipeline"] = FakeCodePipeline(pending(*ACTIONS))
    argv = ["override", "--pipeline", PIPELINE, "--stage", STAGE, "--execution-id", EXECUTION, "--actions", "A"]
    assert rmp.main([*argv, "--override", "false"]) == 0
    assert codepipeline.answers == [] and json.loads(capsys.readouterr().out) == {"override": False}


def test_approvals_of_an_earlier_execution_are_not_this_runs(registry, build_dir, capsys) -> None:
    arn = register(build_dir, capsys)["package"]
    registry.fake["codepipeline"] = FakeCodePipeline({"DataScienceApproval": {"status": "Succeeded"}})
    argv = approval_argv("approve", arn)
    argv[argv.index(EXECUTION)] = "another-execution"
    assert rmp.main(argv) == 1
    assert registry.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "PendingManualApproval"


# ---- inputs ------------------------------------------------------------------------------------------------
def test_a_failed_gate_or_another_model_is_not_registered(registry, build_dir, capsys) -> None:
    (build_dir / "gate" / "model-gate.json").write_text(json.dumps({**GATE, "passed": False}))
    assert rmp.main(register_argv(build_dir)) == 2
    assert "did not pass" in capsys.readouterr().err
    (build_dir / "gate" / "model-gate.json").write_text(json.dumps(GATE))
    template = build_dir / "cdk.out" / "assembly-Pipeline-prod" / "PipelineprodInferenceBC6409D2.template.json"
    template.write_text(json.dumps(inference_template(model_hash="0" * 16)))
    assert rmp.main(register_argv(build_dir)) == 2
    assert "production deploys model-hash 0000000000000000" in capsys.readouterr().err
    assert registry.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"] == []


def test_the_check_refuses_an_approved_package_of_another_model(registry, build_dir, capsys) -> None:
    arn = register(build_dir, capsys)["package"]
    registry.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="ok")
    template = build_dir / "cdk.out" / "assembly-Pipeline-prod" / "PipelineprodInferenceBC6409D2.template.json"
    changed = inference_template()
    changed["Resources"]["Model"]["Properties"]["PrimaryContainer"]["ModelDataUrl"] = "s3://other/model.tar.gz"
    template.write_text(json.dumps(changed))
    assert rmp.main(check_argv(arn, build_dir)) == 1
    assert "production deploys 's3://other/model.tar.gz'" in capsys.readouterr().err


def test_asset_uris_resolve_pseudo_parameters_only() -> None:
    pseudo = {"AWS::AccountId": ACCOUNT, "AWS::URLSuffix": "amazonaws.com"}
    assert rmp.resolve({"Fn::Sub": IMAGE_SUB}, pseudo) == IMAGE
    assert rmp.resolve("s3://given/model.tar.gz", pseudo) == "s3://given/model.tar.gz"
    with pytest.raises(rmp.RegistryInputError, match=r"\$\{Bucket\}"):
        rmp.resolve({"Fn::Sub": "s3://${Bucket}/m.tar.gz"}, pseudo)
    with pytest.raises(rmp.RegistryInputError, match="not a string"):
        rmp.resolve({"Fn::GetAtt": ["Bucket", "Arn"]}, pseudo)


def test_lineage_reads_what_a_retraining_build_records() -> None:
    # The shape model_container/build_model.py writes under metadata.json "lineage".
    record = {
        "code_commit": "abc123",
        "dataset": {"uri": "s3://data/snapshots/ab12/", "content_sha256": "ab12" * 16, "rows": 900, "sources": []},
        "parameters": {"seed": 7, "C": 1.0},
        "parent_version": "1.0.0",
        "holdout": {"rows": 180, "by_source": {"bundled": 114, "captured": 66}},
    }
    facts = rmp.lineage(metadata(lineage=record))
    assert facts["dataset-uri"] == "s3://data/snapshots/ab12/" and facts["dataset-sha256"] == "ab12" * 16
    assert (facts["dataset-rows"], facts["parent-version"], facts["seed"]) == ("900", "1.0.0", "7")
    assert facts["parameters"] == "C=1.0, seed=7"
    bare = {k: v for k, v in metadata().items() if k not in ("lineage", "seed")}
    absent = rmp.lineage(bare)
    assert absent["dataset-uri"] == absent["parent-version"] == absent["seed"] == "not recorded by this build"


def test_the_lineage_commit_stands_in_for_an_untagged_template(build_dir: Path) -> None:
    template = build_dir / "cdk.out" / "assembly-Pipeline-prod" / "PipelineprodInferenceBC6409D2.template.json"
    template.write_text(json.dumps(inference_template(commit="unknown")))
    (build_dir / "gate" / "metadata.json").write_text(json.dumps(metadata(lineage={"code_commit": "fed987"})))
    build = rmp.load_build(
        template.parent, build_dir / "gate" / "metadata.json", build_dir / "gate" / "model-gate.json",
        account=ACCOUNT, region=REGION,
    )  # fmt: skip
    assert build.key == f"fed987:{SHA}"


def test_metadata_properties_hold_only_what_the_api_allows() -> None:
    build = rmp.Build(
        commit="abc123", content_sha256=SHA, model_name="m", model_version=VERSION, task="binary_classification",
        image=IMAGE, model_data_url="s3://b/m.gz", environment={}, instance_types=(), metadata=metadata(), gate=GATE,
    )  # fmt: skip
    properties = rmp.customer_metadata(build)
    assert len(properties) <= 50
    for key, value in properties.items():
        assert METADATA_VALUE.fullmatch(key) and len(key) <= 128, key
        assert METADATA_VALUE.fullmatch(value), (key, value)
    assert properties["algorithm"] == rmp.metadata_value(metadata()["algorithm"])
    assert properties["task"] == "binary_classification"


def test_the_create_request_matches_the_api_reference_shape(build_dir: Path) -> None:
    """botocore validates every parameter against the SageMaker service model (CreateModelPackage), including
    what moto drops: the model card (ModelPackageModelCard) and the idempotency token (ClientToken, 1-36 of
    [a-zA-Z0-9-])."""
    _, request = validated_request(build_dir)
    card = json.loads(request["ModelCard"]["ModelCardContent"])
    assert set(card["model_overview"]) == {"model_creator", "model_artifact"}  # the model package card's overview
    assert card["additional_information"]["custom_details"]["task"] == "binary_classification"
    names = [metric["name"] for metric in card["evaluation_details"][0]["metric_groups"][0]["metric_data"]]
    assert names == ["accuracy", "precision", "recall", "roc_auc"]
    assert request["ModelApprovalStatus"] == "PendingManualApproval"
    assert re.fullmatch(r"[a-zA-Z0-9-]{1,36}", request["ClientToken"])
    assert request["InferenceSpecification"]["SupportedRealtimeInferenceInstanceTypes"] == ["ml.c6i.large"]


def test_put_approval_result_requests_match_the_api_reference_shape() -> None:
    client = botocore.session.get_session().create_client(
        "codepipeline", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    context = rmp.ApprovalContext(PIPELINE, STAGE, EXECUTION)
    with Stubber(client) as stubber:
        stubber.add_response(
            "put_approval_result",
            {"approvedAt": "2026-12-01T00:00:00Z"},
            {
                "pipelineName": PIPELINE,
                "stageName": STAGE,
                "actionName": "DataScienceApproval",
                "result": {"summary": "x" * 512, "status": "Approved"},
                "token": "11111111-2222-3333-4444-555555555555",
            },
        )
        stubber.add_client_error("put_approval_result", "ApprovalAlreadyCompletedException")
        tokens = {"DataScienceApproval": "11111111-2222-3333-4444-555555555555"}
        assert rmp.answer(client, context, tokens, "Approved", "x" * 600) == {"DataScienceApproval": "approved"}
        assert rmp.answer(client, context, tokens, "Approved", "y") == {
            "DataScienceApproval": "already settled: ApprovalAlreadyCompletedException"
        }


def validated_request(build_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The build in `build_dir` and its CreateModelPackage request, validated by botocore's Stubber against the
    SageMaker service model (moto skips the card and the client token)."""
    build = rmp.load_build(
        build_dir / "cdk.out" / "assembly-Pipeline-prod",
        build_dir / "gate" / "metadata.json",
        build_dir / "gate" / "model-gate.json",
        account=ACCOUNT,
        region=REGION,
    )
    client = botocore.session.get_session().create_client(
        "sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    request = rmp.create_request(GROUP, build, "s3://b/k.json", "sha256:" + "0" * 64, "codepipeline:p/execution/e")
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/1"
    with Stubber(client) as stubber:
        stubber.add_response("create_model_package", {"ModelPackageArn": arn}, request)
        assert client.create_model_package(**request)["ModelPackageArn"] == arn
    return build, request


def request_of(build_dir: Path, card: dict[str, Any]) -> dict[str, Any]:
    """The CreateModelPackage request for `card`'s package, validated against botocore's SageMaker model."""
    (build_dir / "gate" / "metadata.json").write_text(json.dumps({**card, "content_sha256": SHA}))
    (build_dir / "gate" / "model-gate.json").write_text(json.dumps(gate_report(card)))
    build, request = validated_request(build_dir)
    request["statistics"] = rmp.quality_statistics(build)
    return request


# Model quality statistics per task as Model Monitor writes them (SageMaker Developer Guide, "Model quality metrics
# and Amazon CloudWatch monitoring"), and CreateModelPackage's Task (API reference).
CLASSIFIER_METRICS = {"accuracy", "macro_f1", "min_class_recall"}
PER_TASK = {
    "binary_classification": ("binary_classification_metrics", {"accuracy", "precision", "recall", "auc"}),
    "multiclass_classification": ("multiclass_classification_metrics", CLASSIFIER_METRICS),
    "regression": ("regression_metrics", {"rmse", "mse", "mae", "r2"}),
}
REGISTRY_TASK = {"binary_classification": "CLASSIFICATION", "multiclass_classification": "CLASSIFICATION"}


def test_every_task_registers_its_own_description_metrics_and_card(model_package: Path, build_dir: Path) -> None:
    card = ModelCard.load(model_package)
    request = request_of(build_dir, dict(card.raw))
    key, names = PER_TASK[card.task]
    assert request["Task"] == REGISTRY_TASK.get(card.task, "REGRESSION")
    assert request["ModelPackageDescription"].startswith(f"{card.name} {card.version} ({card.task.replace('_', ' ')})")
    assert card.description in request["ModelPackageDescription"]
    statistics = request["statistics"]
    assert set(statistics) == {"version", "dataset", key} and set(statistics[key]) == names
    assert statistics["dataset"]["item_count"] == card.holdout_metrics["rows"]
    for name, value in statistics[key].items():
        expected = (
            card.holdout_metrics["rmse"] ** 2
            if name == "mse"
            else card.holdout_metrics[{"auc": "roc_auc"}.get(name, name)]
        )
        assert value == {"value": pytest.approx(expected), "standard_deviation": "NaN"}
    properties = request["CustomerMetadataProperties"]
    assert properties["task"] == card.task and properties["model-name"] == card.name
    assert {k.removeprefix("holdout-") for k in properties if k.startswith("holdout-")} == set(card.metrics)
    content = json.loads(request["ModelCard"]["ModelCardContent"])
    uses, details = content["intended_uses"], content["additional_information"]["custom_details"]
    assert uses["purpose_of_model"].startswith(f"{card.name} {card.version}: {card.task.replace('_', ' ')}")
    assert f"from {card.width} features" in uses["purpose_of_model"]
    assert uses["intended_uses"] == str(card.raw.get("intended_use") or card.description)
    assert uses["risk_rating"] in rmp.RISK_RATINGS
    assert details["task"] == card.task and details["features"] == str(card.width)
    if card.is_classifier:
        assert details["labels"] == ", ".join(card.label_names)
    else:
        assert details["target"] == card.target["name"] and card.target["name"] in uses["purpose_of_model"]
    metric_data = content["evaluation_details"][0]["metric_groups"][0]["metric_data"]
    assert [m["name"] for m in metric_data] == list(card.metrics)
    for metric in metric_data:
        bound = card.acceptance.get(metric["name"])
        assert metric.get("notes") == (
            f"acceptance {next(iter(bound))} {next(iter(bound.values()))}" if bound else None
        )


def test_an_invalid_card_is_not_registered(build_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (build_dir / "gate" / "metadata.json").write_text(json.dumps(metadata(task="ranking")))
    assert rmp.main(register_argv(build_dir)) == 2
    assert "model card field 'task'" in capsys.readouterr().err


# ModelPackageDescription is an EntityDescription: length 0-1024, pattern [\p{L}\p{M}\p{Z}\p{S}\p{N}\p{P}]* (SageMaker
# API reference, CreateModelPackage, https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModelPackage.html);
# botocore does not check patterns, so the Stubber cannot: the test checks each character's Unicode category.


def is_entity_description(text: str) -> bool:
    import unicodedata

    return len(text) <= 1024 and all(unicodedata.category(char)[0] in "LMZSNP" for char in text)


@pytest.mark.parametrize(
    "description",
    ["line one\nline two", "tab\tseparated", "carriage\r\nreturn", "zero\u200bwidth", "bell\x07", "x" * 2000],
)
def test_a_card_description_with_control_characters_registers_a_valid_description(
    model_package: Path, build_dir: Path, description: str
) -> None:
    card = ModelCard.load(model_package)
    request = request_of(build_dir, {**card.raw, "description": description})
    registered = request["ModelPackageDescription"]
    assert is_entity_description(registered), repr(registered)
    assert re.search(r" \(commit [^()]+\)$", registered), registered[-40:]  # the commit is never cut off
    words = "".join(char if is_entity_description(char) else " " for char in description).split()
    assert " ".join(words)[:100] in registered  # the text survives, its control characters as spaces

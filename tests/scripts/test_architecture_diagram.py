"""The architecture picture is drawn from what the templates wire: Ref, GetAtt, imports and literal names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scripts import architecture_diagram


def resource(path: str, **properties: Any) -> dict[str, Any]:
    return {"Type": "AWS::X::Y", "Properties": properties, "Metadata": {"aws:cdk:path": f"prod/{path}/Resource"}}


def write_stage(root: Path) -> Path:
    data = {
        "Resources": {
            "Key": resource("Data/Keys/DataKey"),
            "Table": resource("Data/ReleaseHistory/Table", KmsKey={"Fn::GetAtt": ["Key", "Arn"]}),
            "CDKMetadata": {
                "Type": "AWS::CDK::Metadata",
                "Metadata": {"aws:cdk:path": "prod/Data/CDKMetadata/Default"},
            },
        },
        "Outputs": {"TableOut": {"Value": {"Ref": "Table"}, "Export": {"Name": "data:table"}}},
    }
    inference = {
        "Resources": {
            "Endpoint": resource("Inference/Model/Endpoint", EndpointName="mlapi-prod-endpoint"),
            "Method": resource(
                "Inference/Api/Method",
                Uri="arn:aws:apigateway:eu-west-1:runtime.sagemaker:path//endpoints/mlapi-prod-endpoint/invocations",
            ),
            "Function": resource("Inference/Releases/Function", Table={"Fn::ImportValue": "data:table"}),
            "Helper": resource("Inference/AWS679f53fac002430cb0da5b7982bd2287/Function", X={"Ref": "Endpoint"}),
        }
    }
    stage = root / "assembly-prod"
    stage.mkdir(parents=True)
    (stage / "Data.template.json").write_text(json.dumps(data))
    (stage / "Inference.template.json").write_text(json.dumps(inference))
    return root


def test_edges_come_from_references_imports_and_names(tmp_path: Path) -> None:
    stacks, edges = architecture_diagram.graph(write_stage(tmp_path) / "assembly-prod")
    assert edges == {
        ("Data/ReleaseHistory", "Data/Keys"),  # Fn::GetAtt
        ("Inference/Releases", "Data/ReleaseHistory"),  # Fn::ImportValue of the table's export
        ("Inference/Api", "Inference/Model"),  # the integration names the endpoint
    }
    # CDK's own helpers (metadata, singleton providers) are not the app's architecture.
    assert stacks == {
        "Data": {"Data/Keys", "Data/ReleaseHistory"},
        "Inference": {"Inference/Model", "Inference/Api", "Inference/Releases"},
    }


def test_names_built_from_the_account_wire_the_same_with_or_without_it(tmp_path: Path) -> None:
    # The CLI synthesizes without an account (names are Fn::Join with AWS::AccountId), the tests with one: the
    # picture must be the same, so a joined name is matched as `...-${AWS::AccountId}`.
    account = {"Ref": "AWS::AccountId"}
    bucket = {"Fn::Join": ["", ["mlapi-prod-artifacts-", account]]}
    arn = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::mlapi-prod-artifacts-", account, "/*"]]}
    template = {
        "Resources": {
            "Bucket": resource("Data/Stores/Bucket", BucketName=bucket),
            "Policy": resource("Inference/Drift/Policy", Document={"Resource": arn}),
        }
    }
    stage = tmp_path / "assembly-prod"
    stage.mkdir()
    (stage / "All.template.json").write_text(json.dumps(template))
    _, edges = architecture_diagram.graph(stage)
    assert edges == {("Inference/Drift", "Data/Stores")}


def test_check_reports_a_stale_picture(tmp_path: Path) -> None:
    root = write_stage(tmp_path)
    out = tmp_path / "architecture.md"
    args = ["--cloud-assembly", str(root), "--out", str(out)]
    assert architecture_diagram.main([*args, "--check"]) == 1  # nothing committed yet
    assert architecture_diagram.main(args) == 0
    assert "Inference_Api --> Inference_Model" in out.read_text()
    assert architecture_diagram.main([*args, "--check"]) == 0
    out.write_text(out.read_text().replace("Api", "Gateway"))
    assert architecture_diagram.main([*args, "--check"]) == 1


def test_a_missing_stage_says_to_synthesize(tmp_path: Path) -> None:
    assert architecture_diagram.main(["--cloud-assembly", str(tmp_path), "--out", str(tmp_path / "a.md")]) == 2

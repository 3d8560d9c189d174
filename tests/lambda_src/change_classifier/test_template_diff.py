"""What the classifier ignores and what it counts, on the fixture's synthesized inference template."""

from __future__ import annotations

import copy

from change_classifier.template_diff import differences, normalize, tag_value
from classifier_world import as_deployed, synthesized


def test_commit_tag_construct_paths_and_cdk_bookkeeping_are_ignored() -> None:
    template = synthesized("mlapi-prod-inference")
    deployed = as_deployed(template, commit="f" * 40)
    deployed["Metadata"] = {"some": "template metadata"}
    deployed["Parameters"]["BootstrapVersion"]["Default"] = "/cdk-bootstrap/other/version"
    assert template != deployed and differences(template, deployed) == []
    assert "CDKMetadata" not in normalize(template)["Resources"]


def test_tags_given_as_a_map_lose_only_the_commit() -> None:
    template = {
        "Resources": {"Fn": {"Type": "AWS::SSM::Parameter", "Properties": {"Tags": {"commit": "a", "model-hash": "b"}}}}
    }
    assert normalize(template)["Resources"]["Fn"]["Properties"]["Tags"] == {"model-hash": "b"}


def test_property_changes_added_and_removed_resources_count() -> None:
    template = synthesized("mlapi-prod-inference")
    changed = copy.deepcopy(template)
    changed["Resources"]["ModelConfig0D8E4CD9"]["Properties"]["ProductionVariants"][0]["InstanceType"] = "ml.c6i.xlarge"
    changed["Resources"]["Extra"] = {"Type": "AWS::SNS::Topic"}
    del changed["Resources"]["ModelEndpoint65D8CF31"]
    changed["Outputs"]["EndpointName"]["Value"] = "other"
    assert differences(changed, template) == [
        "Outputs.EndpointName changed",
        "Resources.Extra added",
        "Resources.ModelConfig0D8E4CD9 changed",
        "Resources.ModelEndpoint65D8CF31 removed",
    ]


def test_model_hash_tag_is_read_from_the_sagemaker_model() -> None:
    assert tag_value(synthesized("mlapi-prod-inference"), "AWS::SageMaker::Model", "model-hash") == "bf9558756f5ead0c"
    assert tag_value(synthesized("mlapi-prod-data"), "AWS::SageMaker::Model", "model-hash") is None

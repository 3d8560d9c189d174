"""The delivery pipeline: stage order, gates, approvals with notifications, the model registry steps, and scoped
roles."""

from __future__ import annotations

import copy
import json

import pytest

from platform_config import ConfigError, load_environments, load_pipeline

APPROVALS = ("DataScienceApproval", "OperationsApproval", "ProductApproval")
REGISTRY = "arn:aws:sagemaker:eu-west-1:123456789012"


@pytest.fixture(scope="module")
def pipeline(synthesized) -> dict:
    [resource] = synthesized.resources("pipeline", "pipeline", "AWS::CodePipeline::Pipeline").values()
    return resource["Properties"]


def actions(pipeline: dict, stage: str) -> dict[str, dict]:
    """A stage's actions by name; a step placed after one stack's deploy (StackSteps) is named
    `<stack name>.<step>` and also found under its step name."""
    [found] = [s for s in pipeline["Stages"] if s["Name"] == stage]
    named = {a["Name"]: a for a in found["Actions"]}
    return {**{name.split(".", 1)[1]: a for name, a in named.items() if not name.endswith((".Prepare", ".Deploy"))
               and "." in name}, **named}  # fmt: skip


def deploy(steps: dict[str, dict], stack: str) -> int:
    return steps[f"{stack}.Deploy"]["RunOrder"]


def buildspec(synthesized, action: dict) -> str:
    projects = synthesized.resources("pipeline", "pipeline", "AWS::CodeBuild::Project")
    return projects[action["Configuration"]["ProjectName"]["Ref"]]["Properties"]["Source"]["BuildSpec"]


def build_commands(synthesized, action: dict) -> str:
    """The build phase's commands, one a line, as CodeBuild runs them."""
    return "\n".join(json.loads(buildspec(synthesized, action))["phases"]["build"]["commands"])


def test_stages_run_checks_then_staging_then_approvals_then_production(pipeline) -> None:
    names = [s["Name"] for s in pipeline["Stages"]]
    assert names[:3] == ["Source", "Build", "UpdatePipeline"]
    assert names.index("Checks") < names.index("staging") < names.index("prod") == len(names) - 1
    prod = actions(pipeline, "prod")
    first_deploy = min(a["RunOrder"] for n, a in prod.items() if n.endswith(".Deploy"))
    # Approvals (and what may answer them) -> the package is approved -> checked -> anything touches production.
    for gate in (*APPROVALS, "ChangeClassifier", "ApprovalShortcuts"):
        assert prod[gate]["RunOrder"] < prod["ModelPackageApproval"]["RunOrder"]
    assert prod["ModelPackageApproval"]["RunOrder"] < prod["ModelPackageCheck"]["RunOrder"]
    assert prod["ModelPackageCheck"]["RunOrder"] < prod["AutoscalingBeforeDeploy"]["RunOrder"] < first_deploy
    for step in ("PublishDriftBaseline", "RegisterRelease", "DataTerminationProtection"):
        assert prod["ModelPackageCheck"]["RunOrder"] < prod[step]["RunOrder"] < deploy(prod, "mlapi-prod-inference")
    assert prod["VerifyProduction"]["RunOrder"] > max(a["RunOrder"] for n, a in prod.items() if n.endswith(".Deploy"))


def test_source_is_a_codeconnections_push_trigger(pipeline, cdk_context) -> None:
    [source] = actions(pipeline, "Source").values()
    config = cdk_context["ml-platform"]["pipeline"]["source"]
    assert source["Configuration"]["ConnectionArn"] == config["connection_arn"]
    assert source["Configuration"]["FullRepositoryId"] == config["repository"]
    assert source["Configuration"]["BranchName"] == config["branch"]


def test_build_specs_run_the_readme_commands(synthesized, pipeline) -> None:
    assert "make synth" in buildspec(synthesized, actions(pipeline, "Build")["Synth"])
    checks = actions(pipeline, "Checks")
    assert set(checks) == {"UnitTests", "SecurityScans", "ModelGate", "RegisterModelPackage"}
    assert checks["ModelGate"]["RunOrder"] < checks["RegisterModelPackage"]["RunOrder"]
    assert "make test" in buildspec(synthesized, checks["UnitTests"])
    assert "JUNITXML" in buildspec(synthesized, checks["UnitTests"])
    gate_command = next(c for c in build_commands(synthesized, checks["ModelGate"]).splitlines() if "model_gate" in c)
    # The thresholds are the packaged card's acceptance, read by the gate from --dist: none in the pipeline.
    assert "-m scripts.model_gate --dist model_container/dist" in gate_command and "--thresholds" not in gate_command
    gate = synthesized.context["ml-platform"]["pipeline"]["latency_gate"]
    assert (
        f"-m scripts.latency_gate --dist model_container/dist --requests {gate['requests']} "
        f"--concurrency {gate['concurrency']} --p99-ms {float(gate['single_row_p99_ms'])}"
    ) in buildspec(synthesized, checks["ModelGate"])
    assert "make security-report" in buildspec(synthesized, checks["SecurityScans"])


def test_staging_is_tested_after_deploy_and_bake_is_checked_before_load(synthesized, pipeline) -> None:
    staging = actions(pipeline, "staging")
    last_deploy = max(a["RunOrder"] for n, a in staging.items() if n.endswith(".Deploy"))
    assert last_deploy < staging["NoAlarmDuringBake"]["RunOrder"] < staging["SmokeAndLoadTests"]["RunOrder"]
    assert "-m scripts.smoke_test" in buildspec(synthesized, staging["SmokeAndLoadTests"])


def test_the_bake_check_looks_back_over_stagings_configured_bake(synthesized, pipeline) -> None:
    # One config of truth: the window is staging's deployment.bake_minutes, not a number of the pipeline's own.
    [staging] = load_environments(synthesized.context["ml-platform"], selected="staging")
    command = build_commands(synthesized, actions(pipeline, "staging")["NoAlarmDuringBake"])
    assert "-m scripts.bake_check --alarms mlapi-staging-" in command
    assert f" --minutes {max(1, staging.deployment.bake_minutes)}" in command


def test_each_approval_stage_notifies_its_own_target_with_its_instructions(synthesized, pipeline, cdk_context) -> None:
    configured = {s["name"]: s for s in cdk_context["ml-platform"]["pipeline"]["approvals"]}
    topics = synthesized.resources("pipeline", "pipeline", "AWS::SNS::Topic")
    subscriptions = synthesized.resources("pipeline", "pipeline", "AWS::SNS::Subscription").values()
    prod = actions(pipeline, "prod")
    notified = set()
    for stage, action in zip(("data_science", "operations", "product"), APPROVALS, strict=True):
        configuration = prod[action]["Configuration"]
        topic = configuration["NotificationArn"]["Ref"]
        assert topic in topics and topic.startswith(f"Delivery{action}Topic")
        notified.add(topic)
        emails = {s["Properties"]["Endpoint"] for s in subscriptions if s["Properties"]["TopicArn"] == {"Ref": topic}}
        assert emails == set(configured[stage]["emails"])
        # SNS keeps what it cannot deliver (Serverless-SNSRedrivePolicy): the e-mails have a dead-letter queue.
        assert all(
            "RedrivePolicy" in s["Properties"] for s in subscriptions if s["Properties"]["TopicArn"] == {"Ref": topic}
        )
        assert configuration["CustomData"].startswith(configured[stage]["instructions"])
        assert all(reviewer in configuration["CustomData"] for reviewer in configured[stage]["reviewers"])
        assert configuration["ExternalEntityLink"].startswith("https://")
    assert len(notified) == 3
    # The audit table's name is a reference, so the parameters are a Fn::Join around JSON text.
    classifier = json.dumps(prod["ChangeClassifier"]["Configuration"]["UserParameters"])
    assert '\\"approval_actions\\":[' + ",".join(f'\\"{a}\\"' for a in APPROVALS) + "]" in classifier
    assert "mlapi-prod-inference" in classifier


def shipped_pipeline(cdk_context, change) -> None:
    context = copy.deepcopy(cdk_context["ml-platform"])
    change(context["pipeline"])
    load_pipeline(context, load_environments(context, default_account="123456789012", default_region=None))


def test_synth_refuses_an_approval_stage_that_notifies_nobody(cdk_context) -> None:
    def silence_product(pipeline) -> None:
        pipeline["approvals"][2]["emails"] = []

    with pytest.raises(ConfigError, match=r"ml-platform\.pipeline\.approvals\[2\]\.emails.*'product' notifies nobody"):
        shipped_pipeline(cdk_context, silence_product)

    def pipeline_wide_emails(pipeline) -> None:
        silence_product(pipeline)
        pipeline["approval_emails"] = ["release-managers@example.com"]

    shipped_pipeline(cdk_context, pipeline_wide_emails)  # every stage also notifies approval_emails

    def no_registry_stage(pipeline) -> None:
        pipeline["approvals"][0]["registry"] = False

    with pytest.raises(ConfigError, match=r"pipeline\.approvals': exactly one stage must be the model registry"):
        shipped_pipeline(cdk_context, no_registry_stage)


def test_classifier_may_approve_only_in_this_pipeline(synthesized) -> None:
    template = synthesized.templates[("pipeline", "pipeline")]
    [policy] = [
        r["Properties"]
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::ManagedPolicy" and k.startswith("DeliveryClassifierPolicy")
    ]
    statements = policy["PolicyDocument"]["Statement"]
    [approve] = [s for s in statements if "codepipeline:PutApprovalResult" in s["Action"]]
    assert "mlapi-pipeline-delivery" in json.dumps(approve["Resource"])
    assert not any("sagemaker" in json.dumps(s["Action"]) for s in statements)


def test_artifacts_are_encrypted_and_tls_only(synthesized) -> None:
    buckets = synthesized.resources("pipeline", "pipeline", "AWS::S3::Bucket")
    [artifacts] = [b for k, b in buckets.items() if k.startswith("DeliveryArtifacts") and "Logs" not in k]
    rule = artifacts["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_autoscaling_is_released_before_and_restored_after_each_deploy(synthesized, pipeline, stage: str) -> None:
    steps = actions(pipeline, stage)
    deploys = [a["RunOrder"] for n, a in steps.items() if n.endswith(".Deploy")]
    assert steps["AutoscalingBeforeDeploy"]["RunOrder"] < min(deploys)
    assert steps["AutoscalingAfterDeploy"]["RunOrder"] > max(deploys)
    assert "-m scripts.autoscaling_guard after" in buildspec(synthesized, steps["AutoscalingAfterDeploy"])
    if stage == "prod":  # nothing changes production before the approvals and the package check
        assert steps["AutoscalingBeforeDeploy"]["RunOrder"] > steps["ModelPackageCheck"]["RunOrder"]
        assert steps["VerifyProduction"]["RunOrder"] > steps["AutoscalingAfterDeploy"]["RunOrder"]
    else:
        assert steps["NoAlarmDuringBake"]["RunOrder"] > steps["AutoscalingAfterDeploy"]["RunOrder"]


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_drift_baseline_is_published_after_the_data_stack_and_before_the_endpoint_changes(
    synthesized, pipeline, stage: str
) -> None:
    # The artifacts bucket is the data stack's: a first run has it only once that stack is deployed.
    steps = actions(pipeline, stage)
    published = steps[f"mlapi-{stage}-data.PublishDriftBaseline"]["RunOrder"]
    assert deploy(steps, f"mlapi-{stage}-data") < published < deploy(steps, f"mlapi-{stage}-inference")
    assert f"--bucket mlapi-{stage}-artifacts-" in buildspec(synthesized, steps["PublishDriftBaseline"])


def test_failures_and_pending_approvals_are_notified(synthesized) -> None:
    [rule] = synthesized.resources("pipeline", "pipeline", "AWS::CodeStarNotifications::NotificationRule").values()
    assert {"codepipeline-pipeline-pipeline-execution-failed", "codepipeline-pipeline-manual-approval-needed"} <= set(
        rule["Properties"]["EventTypeIds"]
    )


def test_release_is_recorded_with_its_approvals_and_package_before_production_changes(synthesized, pipeline) -> None:
    prod = actions(pipeline, "prod")
    # After the table's stack, before the endpoint update whose event the release recorder matches to it.
    assert prod["DataScienceApproval"]["RunOrder"] < deploy(prod, "mlapi-prod-data")
    assert deploy(prod, "mlapi-prod-data") < prod["RegisterRelease"]["RunOrder"] < deploy(prod, "mlapi-prod-inference")
    spec = build_commands(synthesized, prod["RegisterRelease"])
    assert f"--approvals {','.join(APPROVALS)}" in spec
    stages = json.loads(spec.split("--stages-json '")[1].split("'")[0])
    assert [s["action"] for s in stages] == list(APPROVALS)
    env = {v["name"]: v["value"] for v in json.loads(prod["RegisterRelease"]["Configuration"]["EnvironmentVariables"])}
    assert env["MODEL_PACKAGE_ARN"] == "#{Checks@RegisterModelPackage.MODEL_PACKAGE_ARN}"
    assert env["EMERGENCY_OVERRIDE"] == "#{variables.EMERGENCY_OVERRIDE}"


def test_drift_events_start_a_retraining_run_that_the_model_gate_records(synthesized, pipeline) -> None:
    assert {v["Name"]: v["DefaultValue"] for v in pipeline["Variables"]} == {
        "RETRAINING": "false",
        "RETRAINING_REASON": "source change",
        "EMERGENCY_OVERRIDE": "false",
        "EMERGENCY_REASON": "none",
    }
    [gate] = [a for a in actions(pipeline, "Checks").values() if a["Name"] == "ModelGate"]
    env = json.loads(gate["Configuration"]["EnvironmentVariables"])
    assert {"name": "RETRAINING", "type": "PLAINTEXT", "value": "#{variables.RETRAINING}"} in env
    rules = synthesized.resources("pipeline", "pipeline", "AWS::Events::Rule")
    patterns = [r["Properties"]["EventPattern"] for r in rules.values()]
    assert any(
        p["source"] == ["ml-platform.drift-monitor"] and p["detail-type"] == ["Model Drift Detected"] for p in patterns
    )
    assert any(p["source"] == ["aws.sagemaker"] and "MonitoringScheduleArn" in p["detail"] for p in patterns)
    [trigger_id] = [
        logical_id
        for logical_id, fn in synthesized.resources("pipeline", "pipeline", "AWS::Lambda::Function").items()
        if fn["Properties"]["Handler"] == "retraining_trigger.handler.handler"
    ]
    trigger = synthesized.resources("pipeline", "pipeline", "AWS::Lambda::Function")[trigger_id]["Properties"]
    # One decision at a time through its decision lock, not a reservation (tests/infra/test_reserved_concurrency.py).
    assert "ReservedConcurrentExecutions" not in trigger
    assert any("AWSLambdaPowertoolsPythonV3" in json.dumps(layer) for layer in trigger["Layers"])
    statements = [
        s
        for policy in synthesized.resources("pipeline", "pipeline", "AWS::IAM::ManagedPolicy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "codepipeline:StartPipelineExecution" in s["Action"]
    ]
    assert {json.dumps(s["Resource"]) for s in statements} == {
        '"arn:aws:codepipeline:eu-west-1:123456789012:mlapi-pipeline-delivery"'
    }  # the retraining trigger and the registry trigger, each scoped to the pipeline


def test_every_pipeline_function_has_the_powertools_layer_its_code_imports(synthesized) -> None:
    functions = synthesized.resources("pipeline", "pipeline", "AWS::Lambda::Function")
    for logical_id, fn in functions.items():
        if fn["Properties"].get("Handler", "").endswith(".handler.handler"):
            assert "AWSLambdaPowertoolsPythonV3" in json.dumps(fn["Properties"].get("Layers")), logical_id


def role_statements(synthesized, role_logical_id: str) -> list[dict]:
    """Every statement of the inline and managed policies attached to one role of the pipeline stack."""
    found = []
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for policy in synthesized.resources("pipeline", "pipeline", kind).values():
            if {"Ref": role_logical_id} in policy["Properties"].get("Roles", []):
                for s in policy["Properties"]["PolicyDocument"]["Statement"]:
                    found.append({**s, "Action": s["Action"] if isinstance(s["Action"], list) else [s["Action"]]})
    return found


def step_access_templates(synthesized) -> dict[str, dict]:
    """The StepAccess stage's templates, by environment (the stack's construct id)."""
    directory = synthesized.outdir / "assembly-Pipeline-StepAccess"
    manifest = json.loads((directory / "manifest.json").read_text())
    found = {}
    for artifact in manifest["artifacts"].values():
        if artifact["type"] == "aws:cloudformation:stack":
            found[artifact["displayName"].split("/")[-1]] = json.loads(
                (directory / artifact["properties"]["templateFile"]).read_text()
            )
    return found


def env_roles(synthesized) -> dict[str, tuple[str, dict, list[dict]]]:
    """Every pipeline-step role of the environments, by name: (environment, role resource, its statements)."""
    found = {}
    for environment, template in step_access_templates(synthesized).items():
        resources = template["Resources"]
        for role in (r for r in resources.values() if r["Type"] == "AWS::IAM::Role"):
            statements = [
                {**s, "Action": s["Action"] if isinstance(s["Action"], list) else [s["Action"]]}
                for arn in role["Properties"]["ManagedPolicyArns"]
                for s in resources[arn["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
            ]
            found[role["Properties"]["RoleName"]] = (environment, role, statements)
    return found


def assumed_role(synthesized, action: dict) -> str | None:
    """The environment role the action's project assumes through its AWS profile (None: none)."""
    projects = synthesized.resources("pipeline", "pipeline", "AWS::CodeBuild::Project")
    project = projects[action["Configuration"]["ProjectName"]["Ref"]]["Properties"]
    variables = {v["Name"]: v["Value"] for v in project["Environment"].get("EnvironmentVariables", [])}
    if "STEP_ACCESS_ROLE_ARN" not in variables:
        return None
    statements = role_statements(synthesized, project["ServiceRole"]["Fn::GetAtt"][0])
    assumes = [s for s in statements if "sts:AssumeRole" in s["Action"]]
    assert [s["Resource"] for s in assumes] == [variables["STEP_ACCESS_ROLE_ARN"]]
    return variables["STEP_ACCESS_ROLE_ARN"].rsplit("/", 1)[1]


def assumed_environment(synthesized, action: dict) -> str | None:
    role = assumed_role(synthesized, action)
    return None if role is None else env_roles(synthesized)[role][0]


def assumed_statements(synthesized, action: dict) -> list[dict]:
    role = assumed_role(synthesized, action)
    assert role is not None
    return env_roles(synthesized)[role][2]


def project_role(synthesized, action: dict) -> str:
    projects = synthesized.resources("pipeline", "pipeline", "AWS::CodeBuild::Project")
    return projects[action["Configuration"]["ProjectName"]["Ref"]]["Properties"]["ServiceRole"]["Fn::GetAtt"][0]


def test_the_source_action_role_may_use_the_connection_under_both_prefixes(synthesized, pipeline, cdk_context) -> None:
    # After the CodeConnections rename "the service prefix needs to match that of the resource" (Developer Tools
    # console User Guide, "Connections rename - Summary of changes"): each action on the ARN in its own prefix.
    [source] = actions(pipeline, "Source").values()
    role = source["RoleArn"]["Fn::GetAtt"][0]
    configured = cdk_context["ml-platform"]["pipeline"]["source"]["connection_arn"]
    suffix = configured.split(":", 3)[3]  # region:account:connection/id
    granted = {
        (action, json.dumps(resource))
        for s in role_statements(synthesized, role)
        if s["Effect"] == "Allow"
        for action in s["Action"]
        for resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    }
    prefixes = ("codestar-connections", "codeconnections")
    for prefix in prefixes:
        assert (f"{prefix}:UseConnection", json.dumps(f"arn:aws:{prefix}:{suffix}")) in granted, prefix
    mismatched = {
        (action, resource)
        for action, resource in granted
        if action.endswith(":UseConnection") and f'"arn:aws:{action.removesuffix(":UseConnection")}:' not in resource
    }
    assert not mismatched  # CDK's own grant names the configured (codeconnections) ARN under codestar-connections


def test_the_model_gate_may_decrypt_the_production_baselines_with_the_data_key(synthesized, pipeline) -> None:
    # The baselines are SSE-KMS under the artifacts bucket's default key (scripts/publish_baseline.py) and the
    # releases table is encrypted with the same data key: S3 and DynamoDB need kms:Decrypt on it. The data key
    # lives in production's data stack, so it is named by alias. Through production's role.
    gate = actions(pipeline, "Checks")["ModelGate"]
    assert assumed_environment(synthesized, gate) == "prod"
    statements = assumed_statements(synthesized, gate)
    decrypts = [s for s in statements if "kms:Decrypt" in s["Action"]]
    assert any(
        s["Condition"] == {"ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/mlapi-prod/data"}}
        and s["Resource"] == "arn:aws:kms:eu-west-1:123456789012:key/*"
        for s in decrypts
        if "Condition" in s
    ), decrypts
    # S3 API Reference, GetObject: without s3:ListBucket a missing key answers 403, not 404 (an older release
    # published no contract).
    bucket = "arn:aws:s3:::mlapi-prod-artifacts-123456789012-eu-west-1"
    assert any(
        "s3:ListBucket" in s["Action"] and s["Resource"] == bucket and "baselines/*" in json.dumps(s["Condition"])
        for s in statements
    )
    table = "arn:aws:dynamodb:eu-west-1:123456789012:table/mlapi-prod-releases"
    assert any("dynamodb:Query" in s["Action"] and table in json.dumps(s["Resource"]) for s in statements)


# ---- the model registry steps ------------------------------------------------------------------------------
def sagemaker_statements(synthesized, action: dict) -> list[dict]:
    """The registry statements a step holds: its own role's, or those of the environment role it assumes."""
    statements = role_statements(synthesized, project_role(synthesized, action))
    if assumed_role(synthesized, action) is not None:
        statements = assumed_statements(synthesized, action)
    return [s for s in statements if any(a.startswith("sagemaker:") for a in s["Action"])]


def test_every_build_registers_a_pending_package_and_nothing_more(synthesized, pipeline) -> None:
    step = actions(pipeline, "Checks")["RegisterModelPackage"]
    spec = build_commands(synthesized, step)
    assert "-m scripts.register_model_package register" in spec and "--group mlapi-models" in spec
    assert "--metadata gate/metadata.json --gate-report gate/model-gate.json" in spec
    assert "cp model_container/dist/metadata.json reports/metadata.json" in build_commands(
        synthesized, actions(pipeline, "Checks")["ModelGate"]
    )
    assert json.loads(buildspec(synthesized, step))["env"]["exported-variables"] == ["MODEL_PACKAGE_ARN"]
    assert assumed_environment(synthesized, step) == "prod"  # the registry is production's
    by_action = {a: s for s in sagemaker_statements(synthesized, step) for a in s["Action"]}
    assert set(by_action) == {
        "sagemaker:ListModelPackages",
        "sagemaker:DescribeModelPackage",
        "sagemaker:CreateModelPackage",
    }
    create = by_action["sagemaker:CreateModelPackage"]
    assert create["Condition"] == {"StringEquals": {"sagemaker:ModelApprovalStatus": "PendingManualApproval"}}
    assert create["Resource"] == [
        f"{REGISTRY}:model-package-group/mlapi-models",
        f"{REGISTRY}:model-package/mlapi-models/*",
    ]


def test_only_the_approval_step_approves_and_the_check_only_reads(synthesized, pipeline) -> None:
    prod = actions(pipeline, "prod")
    [update] = [
        s
        for s in sagemaker_statements(synthesized, prod["ModelPackageApproval"])
        if "sagemaker:UpdateModelPackage" in s["Action"]
    ]
    assert update["Condition"] == {"StringEquals": {"sagemaker:ModelApprovalStatus": "Approved"}}
    assert update["Resource"] == f"{REGISTRY}:model-package/mlapi-models/*"
    check = sagemaker_statements(synthesized, prod["ModelPackageCheck"])
    assert [s["Action"] for s in check] == [["sagemaker:DescribeModelPackage"]]
    spec = build_commands(synthesized, prod["ModelPackageCheck"])
    assert (
        "-m scripts.register_model_package check --region eu-west-1 --account 123456789012 "
        '--package-arn "$MODEL_PACKAGE_ARN"' in spec
    )


def test_the_shortcuts_may_answer_exactly_this_pipelines_approvals(synthesized, pipeline) -> None:
    prod = actions(pipeline, "prod")
    step = prod["ApprovalShortcuts"]
    statements = role_statements(synthesized, project_role(synthesized, step))
    [answer] = [s for s in statements if "codepipeline:PutApprovalResult" in s["Action"]]
    pipeline_arn = "arn:aws:codepipeline:eu-west-1:123456789012:mlapi-pipeline-delivery"
    assert sorted(answer["Resource"]) == sorted(f"{pipeline_arn}/prod/{a}" for a in APPROVALS)
    spec = build_commands(synthesized, step)
    assert "register_model_package registry-decision" in spec and "--action DataScienceApproval" in spec
    assert '--override "$EMERGENCY_OVERRIDE" --reason "$EMERGENCY_REASON"' in spec
    env = {v["name"]: v["value"] for v in json.loads(step["Configuration"]["EnvironmentVariables"])}
    assert env["EMERGENCY_REASON"] == "#{variables.EMERGENCY_REASON}"
    assert env["PIPELINE_EXECUTION_ID"] == "#{codepipeline.PipelineExecutionId}"


# ---- retraining: the Synth step trains on fresh data first, a push build on the live model's lineage ---------
def test_the_synth_step_retrains_on_retraining_runs_rebuilds_lineage_on_push_and_keeps_what_it_packaged(
    synthesized, pipeline
) -> None:
    synth = actions(pipeline, "Build")["Synth"]
    env = json.loads(synth["Configuration"]["EnvironmentVariables"])
    assert {"name": "RETRAINING", "type": "PLAINTEXT", "value": "#{variables.RETRAINING}"} in env
    commands = build_commands(synthesized, synth).splitlines()
    [build] = [c for c in commands if "scripts.retrain run" in c]
    [make] = [i for i, c in enumerate(commands) if c.startswith("make synth")]
    [keep] = [i for i, c in enumerate(commands) if "cp -r model_container/dist cdk.out/model-dist" in c]
    [verify] = [i for i, c in enumerate(commands) if "scripts.retrain verify" in c]
    assert commands.index(build) < make < keep < verify
    assert build.startswith('make deps && if [ "$RETRAINING" = "true" ]; then ')
    run, push = build.split("; else ", 1)
    assert "scripts.retrain lineage" in push and "scripts.retrain lineage" not in run
    training = synthesized.context["ml-platform"]["pipeline"].get("training", {})
    assert f"--min-rows {training.get('min_rows', 500)}" in run
    for command in (run, push):  # production's reads go through production's profile, in its region
        assert "--endpoint mlapi-prod-endpoint --table mlapi-prod-releases" in command
        assert "--environment-profile prod --environment-region eu-west-1" in command
    assert '--upload "s3://$RETRAINING_UPLOAD_BUCKET/datasets/" --kms-key-id "$RETRAINING_UPLOAD_KEY"' in run
    projects = synthesized.resources("pipeline", "pipeline", "AWS::CodeBuild::Project")
    project = projects[synth["Configuration"]["ProjectName"]["Ref"]]["Properties"]["Environment"]
    variables = {v["Name"]: v["Value"] for v in project["EnvironmentVariables"]}
    assert "Ref" in variables["RETRAINING_UPLOAD_BUCKET"] and "Fn::GetAtt" in variables["RETRAINING_UPLOAD_KEY"]


def test_the_steps_that_judge_and_publish_the_model_use_the_build_synth_packaged(synthesized, pipeline) -> None:
    """A retraining or lineage build differs from `make model` on a fresh checkout: the gate, the drift baseline
    and the Model Monitor baseline must judge and publish what the inference stack serves."""
    judged = {
        f"{stage}/{name}": action
        for stage in ("Checks", "staging", "prod")
        for name, action in actions(pipeline, stage).items()
        if name in ("ModelGate", "PublishDriftBaseline")
    }
    assert set(judged) == {"Checks/ModelGate", "staging/PublishDriftBaseline", "prod/PublishDriftBaseline"}
    for name, action in judged.items():
        commands = build_commands(synthesized, action).splitlines()
        copy_in = next(i for i, c in enumerate(commands) if "cp cdk.out/model-dist/* model_container/dist/" in c)
        assert copy_in < commands.index("make model"), name
        artifacts = {a["Name"] for a in action["InputArtifacts"]}
        assert any("Synth" in a for a in artifacts), (name, artifacts)


def test_the_smoke_tests_read_the_card_of_the_build_the_stage_deployed(synthesized, pipeline) -> None:
    """scripts/smoke_test.py builds its rows and checks the answers from a model card: the packaged build's."""
    for stage, name in (("staging", "SmokeAndLoadTests"), ("prod", "VerifyProduction")):
        action = actions(pipeline, stage)[name]
        assert "--card cdk.out/model-dist/metadata.json" in build_commands(synthesized, action), name
        assert any("Synth" in a["Name"] for a in action["InputArtifacts"]), name


def test_the_synth_role_only_assumes_production_and_keeps_the_snapshot(synthesized, pipeline) -> None:
    role = project_role(synthesized, actions(pipeline, "Build")["Synth"])
    statements = role_statements(synthesized, role)
    assert not any("dynamodb:Query" in s["Action"] or "s3:*" in s["Action"] for s in statements)
    [assume] = [s for s in statements if "sts:AssumeRole" in s["Action"]]
    assert assume["Resource"] == "arn:aws:iam::123456789012:role/mlapi-prod-steps-synth"
    [keep] = [s for s in statements if json.dumps(s["Resource"]).endswith('"/datasets/*"]]}')]
    assert set(keep["Action"]) == {"s3:PutObject", "s3:GetObject"}
    keys = [s for s in statements if {"kms:GenerateDataKey", "kms:Decrypt"} <= set(s["Action"])]
    assert keys and all("Fn::GetAtt" in json.dumps(s["Resource"]) for s in keys)  # its own key, not key/*
    environment, _, production = env_roles(synthesized)["mlapi-prod-steps-synth"]
    assert environment == "prod"
    table = "arn:aws:dynamodb:eu-west-1:123456789012:table/mlapi-prod-releases"
    [query] = [s for s in production if "dynamodb:Query" in s["Action"]]
    assert query["Resource"] == [table, f"{table}/index/status-index"]
    [decrypt] = [s for s in production if s["Action"] == ["kms:Decrypt"]]
    assert decrypt["Condition"] == {"ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/mlapi-prod/data"}}
    [reads] = [s for s in production if s["Action"] == ["s3:GetObject"]]
    # The shipped prod config has no ground truth: the runs read only the live model's baselines.
    assert reads["Resource"] == "arn:aws:s3:::mlapi-prod-artifacts-123456789012-eu-west-1/baselines/*"
    assert not any("s3:PutObject" in s["Action"] for s in production)


RETRAINING_INPUTS = {
    "endpoint": "mlapi-prod-endpoint", "releases_table_arn": "arn:aws:dynamodb:r:1:table/mlapi-prod-releases",
    "production_artifacts": "prod-art", "capture_bucket": "cap",
    "capture_prefix": "capture/mlapi-prod-endpoint/AllTraffic/", "ground_truth_prefix": "ground-truth",
    "dataset_uri": "s3://data/datasets/v3/", "data_key_alias": "alias/mlapi-prod/data",
    "data_keys_arn": "arn:aws:kms:r:1:key/*", "upload_bucket": "up", "upload_objects_arn": "arn:aws:s3:::up/datasets/*",
    "upload_key_arn": "arn:aws:kms:r:1:key/up", "profile": "prod", "region": "eu-central-1",
}  # fmt: skip


def test_with_ground_truth_the_retraining_run_reads_only_the_capture_and_label_prefixes() -> None:
    from ml_constructs.pipeline_steps import RetrainingInputs, retraining_commands, retraining_policy
    from platform_config.settings import TrainingSettings

    inputs = RetrainingInputs(**RETRAINING_INPUTS)
    policy = retraining_policy(inputs, "aws")
    lists = {
        (s["Resource"], *s["Condition"]["StringLike"]["s3:prefix"])
        for s in (st.to_json() for st in policy.production)
        if s["Action"] == "s3:ListBucket"
    }
    assert lists == {
        ("arn:aws:s3:::prod-art", "baselines/*"),
        ("arn:aws:s3:::cap", "capture/mlapi-prod-endpoint/AllTraffic/*"),
        ("arn:aws:s3:::cap", "ground-truth/*"),
        ("arn:aws:s3:::data", "datasets/v3/*"),
    }
    assert set(policy.production_wildcards) == {
        "arn:aws:s3:::prod-art/baselines/*",
        "arn:aws:s3:::cap/capture/mlapi-prod-endpoint/AllTraffic/*",
        "arn:aws:s3:::cap/ground-truth/*",
        "arn:aws:s3:::data/datasets/v3/*",
        "arn:aws:kms:r:1:key/*",
    }
    assert policy.pipeline_wildcards == ["arn:aws:s3:::up/datasets/*"]
    [build], _ = retraining_commands(inputs, TrainingSettings())
    assert "--labels-uri s3://cap/ground-truth/" in build and "--dataset-uri s3://data/datasets/v3/" in build
    [sagemaker], _ = retraining_commands(
        inputs, TrainingSettings(runner="sagemaker", max_runtime_seconds=1800, max_wait_seconds=2400)
    )
    assert "--runner sagemaker --training-stack mlapi-prod-inference" in sagemaker


@pytest.mark.parametrize(
    ("retraining", "assumable", "ran"),
    [("true", True, "run"), ("false", True, "lineage"), ("false", False, "bundled")],
)
def test_the_synth_commands_choose_the_build_a_run_can_make(tmp_path, retraining, assumable, ran) -> None:
    """The Synth step's shell, run with stand-ins for make, aws and the venv's python: a retraining run retrains,
    a push run rebuilds the live model's lineage, and a push run that cannot assume production's role yet (the
    first run creates it after Synth) builds the configured model source and names it."""
    import subprocess

    from ml_constructs.pipeline_steps import RetrainingInputs, retraining_commands
    from platform_config.settings import TrainingSettings

    source = "model.source train model_container.models.wine.train:train on data model_container.models.wine.train:load"
    inputs = RetrainingInputs(**RETRAINING_INPUTS, model_source=source)
    [build], [verify] = retraining_commands(inputs, TrainingSettings())
    bin_dir, venv = tmp_path / "bin", tmp_path / ".venv" / "bin"
    bin_dir.mkdir()
    venv.mkdir(parents=True)
    log = tmp_path / "log"
    for path, body in (
        (bin_dir / "make", f'echo "make $*" >> {log}'),
        (bin_dir / "aws", f'echo "aws $*" >> {log}; exit {0 if assumable else 255}'),
        (venv / "python", f'echo "python $*" >> {log}; mkdir -p build && touch build/retrained.json'),
    ):
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RETRAINING": retraining}
    result = subprocess.run(["sh", "-c", f"{build} && {verify}"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    calls = log.read_text()
    assert ("scripts.retrain run" in calls) == (ran == "run")
    assert ("scripts.retrain lineage" in calls) == (ran == "lineage")
    assert ("scripts.retrain verify" in calls) == (ran != "bundled")
    if ran == "bundled":
        assert f"building {source} as configured, without the live model's lineage" in result.stdout
    if ran != "run":
        assert "aws sts get-caller-identity --profile prod" in calls


# ---- issue 13: first run, step access, runtimes, termination protection, the autoscaling guard ---------------
ENVIRONMENT_STEPS = {
    "Build": {"Synth": "prod"},
    "Checks": {"ModelGate": "prod", "RegisterModelPackage": "prod"},
    "staging": {
        "AutoscalingBeforeDeploy": "staging",
        "PublishDriftBaseline": "staging",
        "DataTerminationProtection": "staging",
        "AutoscalingAfterDeploy": "staging",
        "NoAlarmDuringBake": "staging",
        "SmokeAndLoadTests": "staging",
    },
    "prod": {
        "ModelPackageCheck": "prod",
        "AutoscalingBeforeDeploy": "prod",
        "PublishDriftBaseline": "prod",
        "RegisterRelease": "prod",
        "DataTerminationProtection": "prod",
        "AutoscalingAfterDeploy": "prod",
        "VerifyProduction": "prod",
    },
}


def test_the_step_roles_are_deployed_before_any_step_that_assumes_them(synthesized, pipeline) -> None:
    names = [s["Name"] for s in pipeline["Stages"]]
    assert names.index("StepAccess") < names.index("Checks")
    deploys = {
        a["Configuration"]["StackName"] for a in actions(pipeline, "StepAccess").values() if ".Deploy" in a["Name"]
    }
    assert deploys == {"mlapi-staging-pipeline-steps", "mlapi-prod-pipeline-steps"}
    for stage, steps in ENVIRONMENT_STEPS.items():
        for step, environment in steps.items():
            assert assumed_environment(synthesized, actions(pipeline, stage)[step]) == environment, (stage, step)


def test_environment_steps_use_the_role_through_an_aws_profile(synthesized, pipeline) -> None:
    # AWS SDKs and Tools Reference Guide, "Assume role credential provider": role_arn with credential_source
    # EcsContainer (CodeBuild's container credentials); AWS_CONFIG_FILE/AWS_PROFILE select it for aws and boto3.
    projects = synthesized.resources("pipeline", "pipeline", "AWS::CodeBuild::Project")
    for stage, steps in ENVIRONMENT_STEPS.items():
        for step in steps:
            action = actions(pipeline, stage)[step]
            commands = build_commands(synthesized, action).splitlines()
            [config] = [c for c in commands if c.startswith("printf")]
            assert "role_arn = $STEP_ACCESS_ROLE_ARN" in config and "credential_source = EcsContainer" in config
            assert "aws_access_key_id" not in build_commands(synthesized, action)
            [export] = [c for c in commands if c.startswith("export AWS_CONFIG_FILE=")]
            assert export.split()[1].split("=", 1)[1] in config  # the file the profile was written to
            assert commands.index(export) < min(i for i, c in enumerate(commands) if "scripts." in c or "aws " in c)
            # RegisterRelease also reads the pipeline, Synth writes the snapshot to it: their scripts pick the
            # profile for production's resources only.
            if step in ("RegisterRelease", "Synth"):
                assert "AWS_PROFILE" not in export and "--environment-profile prod" in "\n".join(commands)
            else:
                assert f"AWS_PROFILE={steps[step]} " in export
            # Selected in the build's shell only: CodeBuild's artifact upload keeps the step's own role.
            project = projects[action["Configuration"]["ProjectName"]["Ref"]]["Properties"]
            assert "AWS_PROFILE" not in {v["Name"] for v in project["Environment"]["EnvironmentVariables"]}


def test_each_environment_role_trusts_only_its_steps_named_role(synthesized, pipeline) -> None:
    # IAM User Guide, "AWS global condition context keys" (aws:PrincipalArn): the role ARN of a role session; the
    # condition names a role that need not exist yet (a role ARN in Principal must).
    roles = env_roles(synthesized)
    expected = {
        assumed_role(synthesized, actions(pipeline, stage)[step])
        for stage, steps in ENVIRONMENT_STEPS.items()
        for step in steps
    }
    assert expected == set(roles)  # no role without its step
    pipeline_roles = {
        r["Properties"]["RoleName"]
        for r in synthesized.resources("pipeline", "pipeline", "AWS::IAM::Role").values()
        if "RoleName" in r["Properties"]
    }
    for name, (environment, role, _) in roles.items():
        assert name.startswith(f"mlapi-{environment}-steps-")
        [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
        [trusted] = [trust["Condition"]["ArnEquals"]["aws:PrincipalArn"]]
        assert isinstance(trusted, str) and trusted.startswith(
            f"arn:aws:iam::123456789012:role/mlapi-pipeline-{environment}-"
        )
        assert trusted.rsplit("/", 1)[1] in pipeline_roles


def test_every_codebuild_project_pins_node_and_python(synthesized) -> None:
    # STANDARD_7_0 defaults to Node 18; aws-cdk-lib needs Node >= 20 (CodeBuild User Guide, "Available runtimes";
    # the image offers nodejs 18/20 and python 3.11/3.12: aws-codebuild-docker-images ubuntu/standard/7.0).
    projects = synthesized.resources("pipeline", "pipeline", "AWS::CodeBuild::Project")
    assert len(projects) > 20  # synth, checks, stage steps, self-mutation and asset publishing
    for logical_id, project in projects.items():
        runtimes = json.loads(project["Properties"]["Source"]["BuildSpec"])["phases"]["install"]["runtime-versions"]
        assert (runtimes["nodejs"], runtimes["python"]) == ("20", "3.12"), logical_id


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_termination_protection_is_set_after_the_data_stack_deploys(synthesized, pipeline, stage: str) -> None:
    # CDK Pipelines' CloudFormation actions ignore termination_protection (aws/aws-cdk#17871).
    steps = actions(pipeline, stage)
    step = steps[f"mlapi-{stage}-data.DataTerminationProtection"]
    assert step["RunOrder"] > deploy(steps, f"mlapi-{stage}-data")
    assert (
        "aws cloudformation update-termination-protection --enable-termination-protection "
        f"--stack-name mlapi-{stage}-data"
    ) in build_commands(synthesized, step)
    assert any(
        s["Action"] == ["cloudformation:UpdateTerminationProtection"]
        and s["Resource"] == f"arn:aws:cloudformation:eu-west-1:123456789012:stack/mlapi-{stage}-data/*"
        for s in assumed_statements(synthesized, step)
    )
    assert not any("DataTerminationProtection" in name for name in actions(pipeline, "Checks"))


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_the_autoscaling_guard_may_update_capacity_and_pass_the_targets_role(synthesized, pipeline, stage: str) -> None:
    statements = assumed_statements(synthesized, actions(pipeline, stage)["AutoscalingAfterDeploy"])
    endpoint = f"arn:aws:sagemaker:eu-west-1:123456789012:endpoint/mlapi-{stage}-endpoint"
    # SageMaker Developer Guide, "Auto scaling prerequisites".
    assert any(
        "sagemaker:UpdateEndpointWeightsAndCapacities" in s["Action"] and endpoint in json.dumps(s["Resource"])
        for s in statements
    )
    [passes] = [s for s in statements if s["Action"] == ["iam:PassRole"] and "inference" in json.dumps(s["Resource"])]
    assert passes["Condition"] == {"StringEquals": {"iam:PassedToService": "application-autoscaling.amazonaws.com"}}
    # The RoleARN the guard re-registers with: a role of the inference stack that CloudFormation names after it.
    [target] = synthesized.resources(stage, "inference", "AWS::ApplicationAutoScaling::ScalableTarget").values()
    role_id = target["Properties"]["RoleARN"]["Fn::GetAtt"][0]
    role = synthesized.templates[(stage, "inference")]["Resources"][role_id]
    assert "RoleName" not in role["Properties"]
    assert passes["Resource"] == f"arn:aws:iam::123456789012:role/mlapi-{stage}-inference-*"
    [linked] = [s for s in statements if s["Action"] == ["iam:CreateServiceLinkedRole"]]
    assert linked["Resource"].endswith(
        "/sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
    )


def test_the_change_classifier_decides_under_a_lock_not_a_reservation(synthesized) -> None:
    # ReservedConcurrentExecutions fails stack creation in accounts with a low concurrency quota (issue 13 item 9).
    functions = synthesized.resources("pipeline", "pipeline", "AWS::Lambda::Function")
    [classifier] = [f for f in functions.values() if f["Properties"]["Handler"] == "change_classifier.handler.handler"]
    assert "ReservedConcurrentExecutions" not in classifier["Properties"]
    environment = classifier["Properties"]["Environment"]["Variables"]
    assert environment["DECISION_LOCK_NAME"] == "mlapi-pipeline-change-classifier"
    assert int(environment["DECISION_LOCK_LEASE_SECONDS"]) <= 180  # within Lambda's asynchronous retries

"""Self-mutating CDK pipeline: checks and model gate, staging with tests, approvals, guarded production."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnElement, Duration, RemovalPolicy, Stack, Stage, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ml_constructs.chat_notifications import ChatNotifications
from ml_constructs.decision_lock import DecisionLockTable
from ml_constructs.endpoint_alarms import ROLLBACK_ALARMS
from ml_constructs.model_endpoint import CAPTURE_PREFIX, VARIANT_NAME
from ml_constructs.model_registry import (
    RegistryTrigger,
    group_arns,
    group_name,
    metrics_bucket_name,
    metrics_key_alias,
)
from ml_constructs.nag import acknowledge, wildcard_finding
from ml_constructs.pipeline_steps import (
    EMERGENCY_VARIABLES,
    EXECUTION_ID,
    KEEP_PACKAGED_MODEL,
    PACKAGE_ARN_VARIABLE,
    PACKAGED_MODEL,
    REGISTER_PACKAGE,
    USE_PACKAGED_MODEL,
    LambdaInvokeStep,
    NotifyingApprovalStep,
    PipelineCoordinates,
    RegistryTarget,
    RetrainingInputs,
    approval_shortcuts_step,
    data_read,
    grant_use_connection,
    model_data_uri,
    model_monitor_baseline_step,
    model_package_approval_step,
    model_package_check_step,
    model_package_uri,
    model_source_description,
    package_read,
    pipeline_source,
    register_model_package_step,
    retraining_commands,
    retraining_policy,
    upload_environment,
)
from ml_constructs.platform_function import FunctionPlacement, PlatformFunction, terminal_dead_letter_queue
from ml_constructs.platform_keys import PlatformKeys
from ml_constructs.prediction_api import PIPELINE_TEST_TIER, contract_api_version, public_url
from ml_constructs.release_history_table import keyed_table
from ml_constructs.retraining_trigger import RetrainingSource, RetrainingTrigger
from ml_constructs.secure_bucket import REPLICATION_REASON, REPLICATION_RULES, access_log_bucket, secure_bucket
from ml_constructs.step_access import EnvironmentAccess, StepRoles, environment_step
from platform_config import PipelineSettings
from platform_config.settings import ApprovalStage, ChatChannel
from stacks.step_access_stack import StepAccessStage

BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0
# STANDARD_7_0 (Ubuntu 22.04) defaults to Node 18, below what aws-cdk-lib requires (Node >= 20): pinned in every
# project's install phase (CodeBuild User Guide, "Available runtimes": "If a runtime version is not specified,
# CodeBuild uses the default version"). The versions the image installs are its runtimes.yml's
# (aws/aws-codebuild-docker-images, ubuntu/standard/7.0/runtimes.yml: nodejs 18 and 20, python 3.11 and 3.12);
# a version the image lacks fails every build's install phase.
RUNTIME_VERSIONS = codebuild.BuildSpec.from_object(
    {"phases": {"install": {"runtime-versions": {"nodejs": "20", "python": "3.12"}}}}
)
# Application Auto Scaling User Guide, "Amazon SageMaker AI and Application Auto Scaling": the service-linked role
# created when SageMaker endpoint variants are registered, and the service principal it trusts.
SCALING_SERVICE = "sagemaker.application-autoscaling.amazonaws.com"
SCALING_SERVICE_LINKED_ROLE = "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
# Set by the retraining trigger; a push-started run keeps the defaults.
RETRAINING_VARIABLES = [
    codepipeline.Variable(variable_name="RETRAINING", default_value="false", description="true on retraining runs"),
    codepipeline.Variable(
        variable_name="RETRAINING_REASON", default_value="source change", description="what started the run"
    ),
]
JUNIT = "reports/junit.xml"
# The model gate's report directory: its report and the gated build's metadata, for the registration step.
GATE_OUTPUT = "reports"
# The smoke tests build their rows and check the answers from the card of the build synth packaged (the one the
# stage deployed): its features, and the task's response fields.
SMOKE_TEST_CARD = f"--card {PACKAGED_MODEL}/metadata.json"


class DeliveryPipeline(Construct):
    """Exposes `pipeline` (pipelines.CodePipeline), `approvals_topic` (failures and pending approvals),
    `stage_topics` (each approval stage's own), `chat` (or None), `classifier` and `registry_trigger`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        project: str,
        settings: PipelineSettings,
        staging: Stage,
        production: Stage,
        staging_prefix: str,
        staging_bake_minutes: int,
        production_prefix: str,
        production_artifacts_bucket: str,
        staging_artifacts_bucket: str,
        powertools_layer_arn: str,
        environment_accounts: Sequence[str],
        production_account: str,
        production_region: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.powertools = lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", powertools_layer_arn)
        self.guard_wildcards: list[str] = []
        keys = PlatformKeys(self, "Keys", prefix=prefix, removal_policy=RemovalPolicy.RETAIN)
        key = keys.data_key
        artifacts = self._artifact_bucket(key)
        self.approvals_topic = sns.Topic(
            self, "Approvals", display_name=f"{prefix} release approvals", master_key=keys.logs_key, enforce_ssl=True
        )
        self.notification_failures = self._notification_dead_letters(keys.data_key)
        self._subscribe(self.approvals_topic, settings.approval_emails)
        self.stage_topics = self._stage_topics(prefix, settings, keys.logs_key)
        self.chat = self._chat(prefix, settings)

        source = pipeline_source(self, settings.source)
        self.prefix = prefix
        self.step_roles = StepRoles(self, "StepRoles")
        self.access = {
            "staging": self._environment_access(staging, staging_prefix),
            "production": self._environment_access(production, production_prefix),
        }
        staging_access, prod_access = self.access["staging"], self.access["production"]
        synth = self._synth(source, production, prod_access, production_artifacts_bucket, settings, artifacts, key)
        self.synth_step = synth
        replication_buckets = None
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            code_pipeline=codepipeline.Pipeline(
                self,
                "CodePipeline",
                pipeline_name=f"{prefix}-delivery",
                artifact_bucket=artifacts,
                restart_execution_on_update=True,
                pipeline_type=codepipeline.PipelineType.V2,
                variables=[
                    *(RETRAINING_VARIABLES if settings.retraining_trigger else []),
                    *(
                        codepipeline.Variable(variable_name=name, default_value=default, description=description)
                        for name, default, description in EMERGENCY_VARIABLES
                    ),
                ],
                cross_region_replication_buckets=replication_buckets,
            ),
            synth=synth,
            self_mutation=True,
            docker_enabled_for_self_mutation=False,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    build_image=BUILD_IMAGE, compute_type=codebuild.ComputeType.MEDIUM
                ),
                partial_build_spec=RUNTIME_VERSIONS,
                timeout=Duration.minutes(60),
            ),
            asset_publishing_code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(build_image=BUILD_IMAGE, privileged=True),
                partial_build_spec=RUNTIME_VERSIONS,
            ),
        )
        # First after the pipeline updates itself: the environments' step roles, which every later step that
        # reaches an environment assumes (the model gate in Checks reads production's releases).
        access_wave = self.pipeline.add_wave("StepAccess")

        # The gate's report says why the run happened (a push, or drift with its reason).
        retraining_env = (
            {v.variable_name: v.reference() for v in RETRAINING_VARIABLES} if settings.retraining_trigger else None
        )
        checks = self.pipeline.add_wave("Checks")
        assert synth.primary_output is not None  # primary_output_directory is set above
        model_gate = self._model_gate(
            source, synth, prod_access, production_prefix, production_artifacts_bucket, settings, retraining_env
        )  # fmt: skip
        assert model_gate.primary_output is not None
        pipeline_arn = f"arn:{stack.partition}:codepipeline:{stack.region}:{stack.account}:{prefix}-delivery"
        coordinates = PipelineCoordinates(name=f"{prefix}-delivery", stage=production.stage_name, arn=pipeline_arn)
        group_arn, versions_arn = group_arns(
            partition=stack.partition, region=production_region, account=production_account, project=project
        )
        self.registry = RegistryTarget(
            group=group_name(project),
            group_arn=group_arn,
            versions_arn=versions_arn,
            account=production_account,
            region=production_region,
        )
        # Answering and approving read the registry's versions from the pipeline account (its resource policy).
        self.guard_wildcards.append(versions_arn)
        production_assembly = f"assembly-{stack.node.id}-{production.stage_name}"
        register_package = register_model_package_step(
            source=source,
            gate=model_gate.primary_output,
            cdk_out=synth.primary_output,
            assembly=production_assembly,
            registry=self.registry,
            # The registry's own bucket and key, deployed with production's step roles (StepAccess wave): the
            # artifacts bucket and data key come with production's data stack, after the approvals.
            metrics_bucket=metrics_bucket_name(
                prefix=production_prefix, account=production_account, region=production_region
            ),
            data_key_alias=metrics_key_alias(production_prefix),
            pipeline=coordinates,
            access=prod_access,
            roles=self.step_roles,
            pipeline_prefix=prefix,
        )
        package_arn = register_package.exported_variable(PACKAGE_ARN_VARIABLE)
        checks.add_pre(
            self._step("UnitTests", source, ["make test PYTEST_ARGS='--junitxml=" + JUNIT + "'"], reports=True),
            # pip-audit queries vulnerability databases online: a build step's tool, not a test dependency.
            self._step(
                "SecurityScans",
                source,
                [
                    "make security-report",
                    ".venv/bin/pip install --quiet pip-audit==2.10.1",
                    ".venv/bin/pip-audit -r requirements.txt -r requirements-dev.txt",
                ],
            ),
            model_gate,
            register_package,
        )

        guard_alarms = ",".join(f"{staging_prefix}-{name}" for name in ROLLBACK_ALARMS)
        bake_window = max(1, staging_bake_minutes)
        bake_check = self._env_step(
            "NoAlarmDuringBake",
            staging_access,
            source,
            [
                "make deps",
                # CloudFormation returns once the blue/green bake has ended: look back over it (staging's own
                # deployment.bake_minutes, at least one minute so that a zero bake still reads the update's end).
                f".venv/bin/python -m scripts.bake_check --alarms {guard_alarms} --minutes {bake_window}",
            ],
            self._alarm_reader(staging_access),
            wildcards=[staging_access.arn("cloudwatch", f"alarm:{staging_prefix}-*")],
        )
        smoke_tests = self._env_step(
            "SmokeAndLoadTests",
            staging_access,
            source,
            [
                "make deps",
                *self._api_lookup(staging_access),
                f".venv/bin/python -m scripts.smoke_test --url {self._api_url(staging_access)} --api-key $KEY "
                f"--requests {settings.load_test_requests} --concurrency {settings.load_test_concurrency} "
                f"--rate {settings.load_test_rate} --p99-ms {settings.load_test_p99_ms} {SMOKE_TEST_CARD}",
            ],
            self._api_reader(staging_access),
            additional_inputs={"cdk.out": _output(synth)},
        )
        # The bake check first: the smoke tests send invalid requests on purpose, which move the 4xx alarm.
        smoke_tests.add_step_dependency(bake_check)
        scaling_before, scaling_after = self._autoscaling_guard(synth, source, staging, staging_access)
        bake_check.add_step_dependency(scaling_after)
        self.pipeline.add_stage(
            staging,
            pre=[scaling_before],
            # After the data stack (its artifacts bucket), before the inference stack (the endpoint's new version).
            stack_steps=[self._data_stack_steps(staging, staging_access, source, staging_artifacts_bucket)],
            post=[
                scaling_after,
                bake_check,
                smoke_tests,
                *self._model_monitor_baseline(source, staging, staging_access),
            ],
        )

        self.decision_locks = DecisionLockTable(self, "DecisionLocks", key=key, removal_policy=RemovalPolicy.RETAIN)
        self.classifier = self._classifier(prefix, key, keys.logs_key)
        review_url = (
            f"https://{stack.region}.console.aws.amazon.com/codesuite/codepipeline/pipelines/{prefix}-delivery/view"
        )
        approvals = [
            NotifyingApprovalStep(
                stage.action_name,
                topic=self.stage_topics[stage.name],
                review_url=review_url,
                comment=_approval_comment(stage),
            )
            for stage in settings.approvals
        ]
        action_names = [stage.action_name for stage in settings.approvals]
        [model_approval] = [stage.action_name for stage in settings.approvals if stage.registry]
        classify = LambdaInvokeStep(
            "ChangeClassifier",
            function=self.classifier.function,
            input=synth.primary_output,
            user_parameters={
                "pipeline": f"{prefix}-delivery",
                "approval_stage": production.stage_name,
                "approval_actions": action_names,
                "watched_stacks": [
                    f"{production_prefix}-inference",
                    f"{production_prefix}-data",
                    f"{production_prefix}-network",
                ],
                "audit_table": self.audit_table.table_name,
                # This app synthesizes prod twice (directly and in the pipeline); compare the pipeline's copy.
                "assembly": production_assembly,
            },
        )
        shortcuts = approval_shortcuts_step(
            source=source,
            package_arn=package_arn,
            registry=self.registry,
            pipeline=coordinates,
            model_approval=model_approval,
            approvals=action_names,
        )
        approve_package = model_package_approval_step(
            source=source,
            package_arn=package_arn,
            registry=self.registry,
            pipeline=coordinates,
            model_approval=model_approval,
        )
        check_package = model_package_check_step(
            source=source,
            cdk_out=synth.primary_output,
            assembly=production_assembly,
            package_arn=package_arn,
            registry=self.registry,
            access=prod_access,
            roles=self.step_roles,
            pipeline_prefix=prefix,
        )
        for gate in (*approvals, classify, shortcuts):
            approve_package.add_step_dependency(gate)
        check_package.add_step_dependency(approve_package)
        prod_scaling_before, prod_scaling_after = self._autoscaling_guard(synth, source, production, prod_access)
        register = self._register_release(
            synth, source, prefix, production, prod_access, settings.approvals, package_arn
        )
        prod_data_steps = self._data_stack_steps(
            production, prod_access, source, production_artifacts_bucket, extra=[register]
        )
        # Nothing changes production before the package is approved and checked (the data stack's deploy waits
        # for the stage's pre steps, its post steps for the deploy).
        for step in (prod_scaling_before, *(prod_data_steps.post or [])):
            step.add_step_dependency(check_package)
        verify = self._env_step(
            "VerifyProduction",
            prod_access,
            source,
            [
                "make deps",
                *self._api_lookup(prod_access),
                f".venv/bin/python -m scripts.smoke_test --url {self._api_url(prod_access)} --api-key $KEY "
                f"--requests 50 --concurrency 2 --rate {settings.load_test_rate} {SMOKE_TEST_CARD}",
            ],
            self._api_reader(prod_access),
            additional_inputs={"cdk.out": _output(synth)},
        )
        self.pipeline.add_stage(
            production,
            pre=[*approvals, classify, shortcuts, approve_package, check_package, prod_scaling_before],
            # Release recorded and baseline published once the data stack (table, bucket) exists, and before the
            # inference stack's deploy changes the endpoint (whose event the release recorder matches).
            stack_steps=[prod_data_steps],
            post=[prod_scaling_after, verify, *self._model_monitor_baseline(source, production, prod_access)],
        )
        verify.add_step_dependency(prod_scaling_after)
        # Every statement of the environments' roles is known now: their stage synthesizes when added.
        self.step_access = StepAccessStage(
            stack, "StepAccess", project=project, environments=[staging_access, prod_access]
        )
        access_wave.add_stage(self.step_access)
        self.artifacts = artifacts
        self._grant_classifier(prefix, production_prefix, artifacts)
        self.pipeline.build_pipeline()
        for support in self.pipeline.pipeline.cross_region_support.values():
            harden_replication_support(support.stack, support.replication_bucket)
        if settings.source.connection_arn:
            self._grant_connection(settings.source.connection_arn)
        self.retraining = None
        if settings.retraining_trigger:
            self.retraining = RetrainingTrigger(
                self,
                "Retraining",
                pipeline_name=f"{prefix}-delivery",
                source_accounts=environment_accounts,
                production=RetrainingSource(
                    account=production_account, region=production_region, prefix=production_prefix
                ),
                placement=self._tooling_placement(key, keys.logs_key),
                powertools=self.powertools,
                decision_locks=self.decision_locks,
            )
        self.registry_trigger = RegistryTrigger(
            self,
            "RegistryTrigger",
            project=project,
            pipeline_name=f"{prefix}-delivery",
            stage=production.stage_name,
            approval_action=model_approval,
            register_action=REGISTER_PACKAGE,
            registry_account=production_account,
            registry_region=production_region,
            placement=self._tooling_placement(key, keys.logs_key),
            powertools=self.powertools,
            decision_locks=self.decision_locks,
        )
        self.pipeline.pipeline.notify_on(
            "Failures",
            self.approvals_topic,
            notification_rule_name=f"{prefix}-failures",
            events=[
                codepipeline.PipelineNotificationEvents.PIPELINE_EXECUTION_FAILED,
                codepipeline.PipelineNotificationEvents.MANUAL_APPROVAL_NEEDED,
            ],
        )
        self._acknowledge_generated()

    def _synth(
        self,
        source: pipelines.IFileSetProducer,
        production: Stage,
        access: EnvironmentAccess,
        production_artifacts_bucket: str,
        settings: PipelineSettings,
        artifacts: s3.IBucket,
        key: kms.IKey,
    ) -> pipelines.CodeBuildStep:
        """`make synth`, after a retraining run's fresh build or a push run's lineage build, keeping the packaged
        build in cdk.out for the steps that judge and publish it. With retraining, its production reads go through
        production's Synth role (profile `access.profile`), its snapshot store stays the step's own role's."""
        commit = "-c commit=$CODEBUILD_RESOLVED_SOURCE_VERSION"
        # `make synth` runs `make model`, which builds the configured model source (cdk.json model.source): the
        # user's model is built, or its package fetched, here, and every later step uses what this step packaged.
        make_synth = [f"make synth CDK_ARGS='{commit}'", KEEP_PACKAGED_MODEL]
        package = self._package_read(production, access.partition)
        if not settings.retraining_trigger:
            return pipelines.CodeBuildStep(
                "Synth",
                input=source,
                primary_output_directory="cdk.out",
                commands=make_synth,
                role_policy_statements=package,
            )
        inputs = self._retraining_inputs(production, access, production_artifacts_bucket, settings, artifacts, key)
        before, after = retraining_commands(inputs, settings.training)
        policy = retraining_policy(inputs, access.partition)
        self.guard_wildcards += [w for w in policy.pipeline_wildcards if w != inputs.upload_objects_arn]
        return self._env_step(
            "Synth",
            access,
            source,
            [*before, *make_synth, *after],
            policy.production,
            wildcards=policy.production_wildcards,
            primary_output_directory="cdk.out",
            env={v.variable_name: v.reference() for v in RETRAINING_VARIABLES},
            # The download uses the step's own credentials (use_profile=False): the package read is its role's.
            pipeline_statements=[*policy.pipeline, *package],
            use_profile=False,
            environment_variables=upload_environment(inputs),
        )

    def _package_read(self, production: Stage, partition: str) -> list[iam.PolicyStatement]:
        """With a pre-built S3 package as the model source, the Synth step's role reads and lists that prefix (and
        only it, pipeline_steps.package_read); with an S3 CSV as a training entry point's data, it reads that object
        (data_read). A package directory, an entry point's loader or a CSV in the repository needs no grant."""
        environment = getattr(production, "settings", None)
        if environment is None:
            return []
        statements: list[iam.PolicyStatement] = []
        package = model_package_uri(environment)
        if package and package.startswith("s3://"):
            reads, objects = package_read(package, partition)
            self.guard_wildcards.append(objects)
            statements.extend(reads)
        data = model_data_uri(environment)
        if data:
            statements.append(data_read(data, partition))
        return statements

    def _retraining_inputs(
        self,
        production: Stage,
        access: EnvironmentAccess,
        production_artifacts_bucket: str,
        settings: PipelineSettings,
        artifacts: s3.IBucket,
        key: kms.IKey,
    ) -> RetrainingInputs:
        """Production's names as DataStores and ModelEndpoint give them, in production's account and region."""
        environment = getattr(production, "settings", None)
        ground_truth = environment.monitoring.ground_truth_prefix if environment is not None else None
        endpoint = f"{access.prefix}-endpoint"
        self.retraining_upload = artifacts.arn_for_objects("datasets/*")
        return RetrainingInputs(
            endpoint=endpoint,
            releases_table_arn=access.arn("dynamodb", f"table/{access.prefix}-releases"),
            production_artifacts=production_artifacts_bucket,
            capture_bucket=f"{access.prefix}-capture-{access.account}-{access.region}",
            capture_prefix=f"{CAPTURE_PREFIX}/{endpoint}/{VARIANT_NAME}/",
            ground_truth_prefix=ground_truth,
            dataset_uri=settings.training.dataset_uri,
            data_key_alias=f"alias/{access.prefix}/data",
            data_keys_arn=access.arn("kms", "key/*"),
            upload_bucket=artifacts.bucket_name,
            upload_objects_arn=self.retraining_upload,
            upload_key_arn=key.key_arn,
            profile=access.profile,
            region=access.region,
            model_source=model_source_description(environment),
        )

    def _stage_topics(self, prefix: str, settings: PipelineSettings, key: kms.IKey) -> dict[str, sns.Topic]:
        """One topic per approval stage: its own e-mails, and the pipeline-wide approval_emails."""
        topics = {}
        for stage in settings.approvals:
            topic = sns.Topic(
                self,
                f"{stage.action_name}Topic",
                display_name=f"{prefix} {stage.name.replace('_', ' ')} approval",
                master_key=key,
                enforce_ssl=True,
            )
            self._subscribe(topic, (*stage.emails, *settings.approval_emails))
            topics[stage.name] = topic
        return topics

    def _notification_dead_letters(self, key: kms.Key) -> sqs.Queue:
        """Where SNS puts an approval e-mail it cannot deliver (SNS Developer Guide, "Amazon SNS dead-letter
        queues"): an encrypted queue, whose key must let SNS use it ("To use an encrypted Amazon SQS queue as a
        dead-letter queue, you must use a custom KMS key with a key policy that grants the Amazon SNS service
        principal access")."""
        stack = Stack.of(self)
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("sns.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        return terminal_dead_letter_queue(self, "NotificationFailures", key=key, removal_policy=RemovalPolicy.RETAIN)

    def _subscribe(self, topic: sns.Topic, emails: Sequence[str]) -> None:
        for email in dict.fromkeys(emails):
            topic.add_subscription(subscriptions.EmailSubscription(email, dead_letter_queue=self.notification_failures))

    def _chat(self, prefix: str, settings: PipelineSettings) -> ChatNotifications | None:
        """One channel configuration per chat channel: the pipeline-wide one gets the failures and every stage's
        topic, a stage's own channel its stage's. Returns the pipeline-wide configuration (or None)."""
        topics: dict[ChatChannel, list[sns.ITopic]] = {}
        names: dict[ChatChannel, str] = {}
        if settings.chat:
            topics[settings.chat], names[settings.chat] = [self.approvals_topic, *self.stage_topics.values()], ""
        for stage in settings.approvals:
            if stage.chat and stage.chat not in topics:
                topics[stage.chat], names[stage.chat] = [self.stage_topics[stage.name]], stage.name
            elif stage.chat and stage.chat != settings.chat:
                topics[stage.chat].append(self.stage_topics[stage.name])
        configurations = {
            channel: ChatNotifications(
                self,
                "Chat" + "".join(part.title() for part in names[channel].split("_")),
                name="-".join(filter(None, [prefix, names[channel].replace("_", "-"), "approvals"])),
                channel=channel,
                topics=channel_topics,
            )
            for channel, channel_topics in topics.items()
        }
        return configurations[settings.chat] if settings.chat else None

    def _step(
        self,
        step_id: str,
        source: pipelines.IFileSetProducer,
        commands: list[str],
        *,
        reports: bool = False,
        policy: list[iam.PolicyStatement] | None = None,
        env: dict[str, str] | None = None,
        output: str | None = None,
    ) -> pipelines.CodeBuildStep:
        policy = list(policy or [])
        return pipelines.CodeBuildStep(
            step_id,
            input=source,
            commands=commands,
            env=env,
            primary_output_directory=output,
            role_policy_statements=policy,
            partial_build_spec=codebuild.BuildSpec.from_object(
                {"reports": {"pytest": {"files": [JUNIT], "file-format": "JUNITXML"}}}
            )
            if reports
            else None,
        )

    def _environment_access(self, stage: Stage, env_prefix: str) -> EnvironmentAccess:
        """The environment a stage deploys, as its steps reach it; an unset account is the pipeline's."""
        stack = Stack.of(self)
        environment = getattr(stage, "settings", None)
        account = (environment.account if environment is not None else None) or stack.account
        region = environment.region if environment is not None else stack.region
        return EnvironmentAccess(
            name=stage.stage_name,
            prefix=env_prefix,
            account=account,
            region=region,
            partition=stack.partition,
            pipeline_account=stack.account,
        )

    def _env_step(
        self,
        step_id: str,
        access: EnvironmentAccess,
        source: pipelines.IFileSetProducer,
        commands: list[str],
        statements: list[iam.PolicyStatement],
        *,
        wildcards: Sequence[str] = (),
        **options: Any,
    ) -> pipelines.CodeBuildStep:
        return environment_step(
            step_id,
            access=access,
            roles=self.step_roles,
            pipeline_prefix=self.prefix,
            input=source,
            commands=commands,
            statements=statements,
            wildcards=wildcards,
            **options,
        )

    def _model_gate(
        self,
        source: pipelines.IFileSetProducer,
        synth: pipelines.CodeBuildStep,
        access: EnvironmentAccess,
        production_prefix: str,
        bucket: str,
        settings: PipelineSettings,
        env: dict[str, str] | None,
    ) -> pipelines.CodeBuildStep:
        """The candidate against the live model: production's release record, its published baseline and
        contract, read as production's role. The thresholds are the packaged card's `acceptance`, read by the gate
        when it runs: a model's numbers stay out of the pipeline's own template, which a retrained card would
        otherwise change (and the pipeline update itself) on every run."""
        latency = settings.latency_gate
        releases_table = access.arn("dynamodb", f"table/{production_prefix}-releases")
        baselines = f"arn:{access.partition}:s3:::{bucket}/baselines/*"
        data_keys = access.arn("kms", "key/*")
        return self._env_step(
            "ModelGate",
            access,
            source,
            [
                *USE_PACKAGED_MODEL,
                f"mkdir -p {GATE_OUTPUT}",
                ".venv/bin/python -m scripts.model_gate --dist model_container/dist "
                f"--tolerance {settings.metric_tolerance} "
                f"--endpoint {production_prefix}-endpoint --table {production_prefix}-releases "
                f"--artifacts-bucket {bucket} --report {GATE_OUTPUT}/model-gate.json",
                f"cp model_container/dist/metadata.json {GATE_OUTPUT}/metadata.json",
                ".venv/bin/pytest tests/model_container -q",
                ".venv/bin/python -m scripts.latency_gate --dist model_container/dist "
                f"--requests {latency.requests} --concurrency {latency.concurrency} "
                f"--p99-ms {latency.single_row_p99_ms} "
                f"--batch-rows {latency.batch_rows} --batch-p99-ms {latency.batch_p99_ms} "
                f"--report {GATE_OUTPUT}/latency-gate.json",
            ],
            [
                # The live model's metrics: its release record and its published baseline and contract.
                iam.PolicyStatement(
                    actions=["dynamodb:Query"], resources=[releases_table, f"{releases_table}/index/status-index"]
                ),
                iam.PolicyStatement(actions=["s3:GetObject"], resources=[baselines]),
                # S3 API Reference, GetObject: "If you don't have the s3:ListBucket permission, Amazon S3 returns
                # an HTTP status code 403" for a missing key; with it, 404 — an older release without a contract.
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[f"arn:{access.partition}:s3:::{bucket}"],
                    conditions={"StringLike": {"s3:prefix": ["baselines/*"]}},
                ),
                # The baselines (SSE-KMS under the artifacts bucket's default key) and the releases table are
                # encrypted with production's data key, known here by its alias only.
                iam.PolicyStatement(
                    actions=["kms:Decrypt"],
                    resources=[data_keys],
                    conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/{production_prefix}/data"}},
                ),
            ],
            wildcards=[baselines, data_keys],
            env=env,
            primary_output_directory=GATE_OUTPUT,
            additional_inputs={"cdk.out": _output(synth)},
        )

    def _data_stack_steps(
        self,
        stage: Stage,
        access: EnvironmentAccess,
        source: pipelines.IFileSetProducer,
        bucket: str,
        *,
        extra: Sequence[pipelines.Step] = (),
    ) -> pipelines.StackSteps:
        """After the stage's data stack deploys (CDK Pipelines makes the stacks that depend on it, the inference
        stack among them, wait for these): the drift baseline, termination protection, and `extra`."""
        data = getattr(stage, "data", None)
        if not isinstance(data, Stack):
            raise ValueError(f"stage {stage.stage_name} has no data stack to place its steps after")
        post: list[pipelines.Step] = [self._publish_baseline(source, bucket, access), *extra]
        environment = getattr(stage, "settings", None)
        if environment is not None and environment.data.removal_policy == "retain":
            post.append(self._termination_protection(access, source, data.stack_name))
        return pipelines.StackSteps(stack=data, post=post)

    def _termination_protection(
        self, access: EnvironmentAccess, source: pipelines.IFileSetProducer, stack_name: str
    ) -> pipelines.CodeBuildStep:
        """CDK Pipelines' CloudFormation actions ignore `termination_protection` (aws/aws-cdk#17871): set it."""
        stack_arn = access.arn("cloudformation", f"stack/{stack_name}/*")
        return self._env_step(
            "DataTerminationProtection",
            access,
            source,
            [
                "aws cloudformation update-termination-protection --enable-termination-protection "
                f"--stack-name {stack_name}"
            ],
            [iam.PolicyStatement(actions=["cloudformation:UpdateTerminationProtection"], resources=[stack_arn])],
            wildcards=[stack_arn],
        )

    def _register_release(
        self,
        synth: pipelines.CodeBuildStep,
        source: pipelines.IFileSetProducer,
        prefix: str,
        stage: Stage,
        access: EnvironmentAccess,
        approvals: Sequence[ApprovalStage],
        package_arn: str,
    ) -> pipelines.CodeBuildStep:
        """Record the release about to be deployed in the environment's release history: its approvals (stage,
        approver, expected reviewers), the model package it deploys, and an emergency override's who and why.

        The approvals are the pipeline's (read with the step's own role, in the pipeline account and region), the
        release table the environment's (written through the environment's profile, in its region)."""
        stack = Stack.of(self)
        cdk_out = synth.primary_output
        assert cdk_out is not None
        pipeline_name = f"{prefix}-delivery"
        keys = access.arn("kms", "key/*")
        stages = json.dumps(
            [{"stage": s.name, "action": s.action_name, "reviewers": list(s.reviewers)} for s in approvals],
            separators=(",", ":"),
        )
        return self._env_step(
            "RegisterRelease",
            access,
            source,
            [
                "make deps",
                f".venv/bin/python -m scripts.register_release --assembly cdk.out/assembly-{stack.node.id}-"
                f"{stage.stage_name} --pipeline {pipeline_name} --stage {stage.stage_name} "
                f"--approvals {','.join(s.action_name for s in approvals)} --table {access.prefix}-releases "
                f"--environment-profile {access.profile} --environment-region {access.region} "
                f"""--execution-id "$PIPELINE_EXECUTION_ID" --stages-json '{stages}' """
                '--emergency-override "$EMERGENCY_OVERRIDE" --emergency-reason "$EMERGENCY_REASON"',
            ],
            [
                iam.PolicyStatement(
                    actions=["dynamodb:PutItem"], resources=[access.arn("dynamodb", f"table/{access.prefix}-releases")]
                ),
                iam.PolicyStatement(
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[keys],
                    conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/{access.prefix}/data"}},
                ),
            ],
            wildcards=[keys],
            additional_inputs={"cdk.out": cdk_out},
            env={
                PACKAGE_ARN_VARIABLE: package_arn,
                "PIPELINE_EXECUTION_ID": EXECUTION_ID,
                **{name: f"#{{variables.{name}}}" for name, _, _ in EMERGENCY_VARIABLES},
            },
            pipeline_statements=[
                iam.PolicyStatement(
                    actions=["codepipeline:GetPipelineState", "codepipeline:GetPipelineExecution"],
                    resources=[f"arn:{stack.partition}:codepipeline:{stack.region}:{stack.account}:{pipeline_name}"],
                ),
            ],
            use_profile=False,
        )

    def _publish_baseline(
        self, source: pipelines.IFileSetProducer, bucket: str, access: EnvironmentAccess
    ) -> pipelines.CodeBuildStep:
        """The drift job compares traffic with the baseline of the model that served it: the build synth
        packaged, published under its content hash."""
        objects = f"arn:{access.partition}:s3:::{bucket}/baselines/*"
        keys = access.arn("kms", "key/*")
        return self._env_step(
            "PublishDriftBaseline",
            access,
            source,
            [*USE_PACKAGED_MODEL, f".venv/bin/python -m scripts.publish_baseline --bucket {bucket}"],
            [
                # Written once (If-None-Match), read back to compare when the key already exists.
                iam.PolicyStatement(actions=["s3:PutObject", "s3:GetObject"], resources=[objects]),
                # The artifacts bucket encrypts with the environment's data key, known here by its alias only.
                iam.PolicyStatement(
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[keys],
                    conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/{access.prefix}/data"}},
                ),
            ],
            wildcards=[objects, keys],
            additional_inputs={"cdk.out": _output(self.synth_step)},
        )

    def _autoscaling_guard(
        self,
        synth: pipelines.CodeBuildStep,
        source: pipelines.IFileSetProducer,
        stage: Stage,
        access: EnvironmentAccess,
    ) -> tuple[pipelines.CodeBuildStep, pipelines.CodeBuildStep]:
        """Steps around a stage's deploy: SageMaker rejects an instance-type change on an autoscaled variant."""
        stack = Stack.of(self)
        cdk_out = synth.primary_output
        assert cdk_out is not None
        template = f"$(ls cdk.out/assembly-{stack.node.id}-{stage.stage_name}/*Inference*.template.json)"
        endpoint = f"{access.prefix}-endpoint"
        arn = access.arn
        scalable_targets = arn("application-autoscaling", "scalable-target/*")
        scaling_alarms = arn("cloudwatch", f"alarm:TargetTracking-endpoint/{endpoint}/*")
        configs = arn("sagemaker", f"endpoint-config/{endpoint}-*")
        iam_arn = f"arn:{access.partition}:iam::{access.account}:role"
        # The scalable target's RoleARN in the template: the role CDK creates in the inference stack, named
        # <stack name>-<logical id>-<suffix> by CloudFormation.
        target_roles = f"{iam_arn}/{access.prefix}-inference-*"
        statements = [
            # SageMaker Developer Guide, "Auto scaling prerequisites": DescribeEndpoint, DescribeEndpointConfig and
            # UpdateEndpointWeightsAndCapacities (Application Auto Scaling changes the instance count with it).
            iam.PolicyStatement(
                actions=[
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:UpdateEndpointWeightsAndCapacities",
                ],
                resources=[arn("sagemaker", f"endpoint/{endpoint}"), configs],
            ),
            iam.PolicyStatement(actions=["application-autoscaling:DescribeScalableTargets"], resources=["*"]),
            iam.PolicyStatement(
                actions=[
                    "application-autoscaling:RegisterScalableTarget",
                    "application-autoscaling:DeregisterScalableTarget",
                    "application-autoscaling:PutScalingPolicy",
                    "application-autoscaling:PutScheduledAction",
                ],
                resources=[scalable_targets],
            ),
            # Target tracking creates its alarms with the caller's rights, named after the scaled resource.
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"],
                resources=[scaling_alarms],
            ),
            # Re-registering with the template's RoleARN passes that role to Application Auto Scaling.
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[target_roles],
                conditions={"StringEquals": {"iam:PassedToService": "application-autoscaling.amazonaws.com"}},
            ),
            # Application Auto Scaling User Guide, "Service-linked roles for Application Auto Scaling": the first
            # RegisterScalableTarget for SageMaker in an account creates this role, with the caller's
            # iam:CreateServiceLinkedRole.
            iam.PolicyStatement(
                actions=["iam:CreateServiceLinkedRole"],
                resources=[f"{iam_arn}/aws-service-role/{SCALING_SERVICE}/{SCALING_SERVICE_LINKED_ROLE}"],
                conditions={"StringLike": {"iam:AWSServiceName": SCALING_SERVICE}},
            ),
        ]

        inference_stack = arn("cloudformation", f"stack/{access.prefix}-inference/*")
        # After the deploy the guard re-registers the target with the template's RoleARN, a Fn::GetAtt it resolves
        # from the deployed stack (scripts/autoscaling_guard.py).
        resolve_role = iam.PolicyStatement(
            actions=["cloudformation:DescribeStackResource"], resources=[inference_stack]
        )

        def step(phase: str) -> pipelines.CodeBuildStep:
            return self._env_step(
                f"Autoscaling{phase.title()}Deploy",
                access,
                source,
                ["make deps", f".venv/bin/python -m scripts.autoscaling_guard {phase} --template {template}"],
                [*statements, resolve_role] if phase == "after" else statements,
                wildcards=[scalable_targets, scaling_alarms, configs, target_roles, inference_stack],
                additional_inputs={"cdk.out": cdk_out},
            )

        return step("before"), step("after")

    def _grant_connection(self, connection_arn: str) -> None:
        """The source action's role (one per action, generated under the pipeline's Source stage) uses the
        connection; the pipeline's own role only assumes it."""
        stage = self.pipeline.pipeline.node.find_child("Source")
        roles = [c for c in stage.node.find_all() if isinstance(c, iam.Role)]
        if not roles:
            raise ValueError("the pipeline's Source stage has no action role to grant UseConnection to")
        for role in roles:
            grant_use_connection(role, connection_arn)

    @staticmethod
    def _api_url(access: EnvironmentAccess) -> str:
        # $API_ID is looked up per environment in each step before the URL is used. The version is the contract's,
        # which synth keeps equal to every environment's api.version (PredictionApi refuses another).
        return public_url(api_id="$API_ID", region=access.region, api_version=contract_api_version())

    @staticmethod
    def _api_lookup(access: EnvironmentAccess) -> list[str]:
        """The environment's API id and the pipeline's own test key, by name: the API marks that key's traffic as
        test traffic, which the drift job and the retraining dataset leave out (ml_constructs/prediction_api.py)."""
        return [
            "API_ID=$(aws apigateway get-rest-apis --query \"items[?name=='" + access.prefix + "-api'].id\" "
            "--output text)",
            f"KEY=$(aws apigateway get-api-keys --name-query {access.prefix}-api-{PIPELINE_TEST_TIER} --include-values "
            "--query 'items[0].value' --output text)",
        ]

    @staticmethod
    def _api_reader(access: EnvironmentAccess) -> list[iam.PolicyStatement]:
        """Smoke tests look up the API's id and key by name (API Gateway ARNs name the region, not the account)."""
        base = f"arn:{access.partition}:apigateway:{access.region}::"
        return [iam.PolicyStatement(actions=["apigateway:GET"], resources=[f"{base}/restapis", f"{base}/apikeys"])]

    @staticmethod
    def _alarm_reader(access: EnvironmentAccess) -> list[iam.PolicyStatement]:
        """The bake check reads the state and history of one environment's alarms."""
        alarms = access.arn("cloudwatch", f"alarm:{access.prefix}-*")
        return [
            iam.PolicyStatement(
                actions=["cloudwatch:DescribeAlarms", "cloudwatch:DescribeAlarmHistory"], resources=[alarms]
            )
        ]

    def _artifact_bucket(self, key: kms.IKey) -> s3.Bucket:
        logs = access_log_bucket(self, "ArtifactAccessLogs", expire_days=365, removal_policy=RemovalPolicy.RETAIN)
        return secure_bucket(self, "Artifacts", key=key, access_logs=logs, removal_policy=RemovalPolicy.RETAIN)

    def _model_monitor_baseline(
        self, source: pipelines.IFileSetProducer, stage: Stage, access: EnvironmentAccess
    ) -> list[pipelines.Step]:
        """With engine model_monitor, the baseline job of the deployed version, as the environment's role."""
        environment = getattr(stage, "settings", None)
        if environment is None or environment.monitoring.engine != "model_monitor":
            return []
        return [
            model_monitor_baseline_step(
                "ModelMonitorBaseline",
                source=source,
                environment=environment,
                access=access,
                roles=self.step_roles,
                pipeline_prefix=self.prefix,
                cdk_out=_output(self.synth_step),
            )
        ]

    @staticmethod
    def _tooling_placement(key: kms.IKey, logs_key: kms.IKey) -> FunctionPlacement:
        """The tooling account has no VPC: its functions call public AWS APIs only."""
        return FunctionPlacement(
            vpc=None,
            subnets=None,
            security_group=None,
            data_key=key,
            logs_key=logs_key,
            log_retention_days=365,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _classifier(self, prefix: str, key: kms.IKey, logs_key: kms.IKey) -> PlatformFunction:
        self.audit_table = keyed_table(self, "ApprovalAudit", key=key, removal_policy=RemovalPolicy.RETAIN)
        fn = PlatformFunction(
            self,
            "Classifier",
            function_name=f"{prefix}-change-classifier",
            code=lambda_.Code.from_asset("lambda_src/change_classifier"),
            handler="change_classifier.handler.handler",
            environment={"POWERTOOLS_SERVICE_NAME": "change-classifier"},
            placement=self._tooling_placement(key, logs_key),
            timeout_seconds=120,
            layers=[self.powertools],
        )
        # One classification at a time under a lease lock, not a concurrency reservation (issue 13 item 9); a
        # busy invocation raises for Lambda's asynchronous retry.
        self.decision_locks.attach(fn, retried_when_busy=True)
        return fn

    def _grant_classifier(self, prefix: str, production_prefix: str, artifacts: s3.IBucket) -> None:
        stack = Stack.of(self)
        pipeline_arn = f"arn:{stack.partition}:codepipeline:{stack.region}:{stack.account}:{prefix}-delivery"
        self.classifier.policy.add_statements(
            iam.PolicyStatement(
                actions=["codepipeline:GetPipelineState", "codepipeline:PutApprovalResult"],
                resources=[pipeline_arn, f"{pipeline_arn}/*"],
            ),
            # Job results name a job id, not a resource: CodePipeline allows only "*" here.
            iam.PolicyStatement(
                actions=["codepipeline:PutJobSuccessResult", "codepipeline:PutJobFailureResult"], resources=["*"]
            ),
            iam.PolicyStatement(
                actions=["cloudformation:GetTemplate"],
                resources=[
                    f"arn:{stack.partition}:cloudformation:{stack.region}:{stack.account}:stack/{production_prefix}-{name}/*"
                    for name in ("inference", "data", "network")
                ],
            ),
            iam.PolicyStatement(
                actions=["dynamodb:PutItem", "dynamodb:UpdateItem"], resources=[self.audit_table.table_arn]
            ),
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[artifacts.arn_for_objects("*")]),
        )
        acknowledge(
            self.classifier.policy,
            [
                wildcard_finding(stack, f"{pipeline_arn}/*"),
                *(
                    wildcard_finding(
                        stack,
                        f"arn:{stack.partition}:cloudformation:{stack.region}:{stack.account}:"
                        f"stack/{production_prefix}-{name}/*",
                    )
                    for name in ("inference", "data", "network")
                ),
            ],
            "Approval results address the pipeline's stages/actions under its own ARN, and a CloudFormation stack "
            "ARN ends in its generated id: the wildcards cover only this pipeline and the three production stacks.",
        )

    def _acknowledge_generated(self) -> None:
        """Findings on what CDK Pipelines generates itself: one role and project per action."""
        stack = Stack.of(self)
        ids = [
            "HIPAA.Security-IAMNoInlinePolicy",
            "NIST.800.53.R5-IAMNoInlinePolicy",
            "PCI.DSS.321-IAMNoInlinePolicy",
            "HIPAA.Security-CodeBuildProjectSourceRepoUrl",
            "PCI.DSS.321-CodeBuildProjectSourceRepoUrl",
            *(
                f"AwsSolutions-IAM5[Action::{a}]"
                for a in (
                    "s3:List*",
                    "s3:GetObject*",
                    "s3:GetBucket*",
                    "s3:DeleteObject*",
                    "s3:Abort*",
                    "kms:GenerateDataKey*",
                    "kms:ReEncrypt*",
                )
            ),
            "AwsSolutions-IAM5[Resource::*]",
            wildcard_finding(stack, f"arn:*:iam::{stack.account}:role/*"),
            # The retraining run's reads (prefixes of production's buckets).
            *(wildcard_finding(stack, resource) for resource in self.guard_wildcards),
            f"AwsSolutions-IAM5[Resource::<{_logical_id(self.artifacts)}.Arn>/*]",
            # The artifact buckets CodePipeline replicates to in the environments' other regions.
            *(
                f"AwsSolutions-IAM5[Resource::arn:{stack.partition}:s3:::{stack.resolve(support.replication_bucket.bucket_name)}/*]"
                for support in self.pipeline.pipeline.cross_region_support.values()
            ),
            # A retraining run keeps its snapshot under datasets/<sha256>/ (scripts/retrain.py).
            f"AwsSolutions-IAM5[Resource::<{_logical_id(self.artifacts)}.Arn>/datasets/*]",
            f"AwsSolutions-IAM5[Resource::<{_logical_id(self.classifier.function)}.Arn>:*]",
            wildcard_finding(
                stack, f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:/aws/codebuild/*"
            ),
            wildcard_finding(stack, f"arn:{stack.partition}:codebuild:{stack.region}:{stack.account}:report-group/*"),
        ]
        for project in (c for c in self.node.find_all() if isinstance(c, codebuild.CfnProject)):
            logical_id = stack.get_logical_id(project)
            ids += [
                wildcard_finding(
                    stack,
                    f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:"
                    f"/aws/codebuild/<{logical_id}>:*",
                ),
                wildcard_finding(
                    stack,
                    f"arn:{stack.partition}:codebuild:{stack.region}:{stack.account}:report-group/<{logical_id}>-*",
                ),
            ]
        acknowledge(
            self,
            ids,
            "Generated by CDK Pipelines: each action gets its own role whose inline policy is scoped to "
            "this pipeline's artifact bucket and key, its own CodeBuild log group and report groups, and "
            "the CDK bootstrap roles it assumes to deploy; sources arrive as CodePipeline artifacts, not "
            "repository URLs. Wildcards are CDK's grant patterns on these pipeline-owned resources.",
        )


def harden_replication_support(stack: Stack, bucket: s3.IBucket) -> None:
    """CodePipeline's artifact bucket in another region (the support stack CDK generates for a cross-region
    deploy): versioned, its access logged to a sink in the same stack, its key rotated — what every other bucket
    and key of the platform has (the nag packs refuse it otherwise). Escape hatches: the stack is CDK's own."""
    cfn_bucket = bucket.node.default_child
    assert isinstance(cfn_bucket, s3.CfnBucket)
    logs = access_log_bucket(stack, "ReplicationAccessLogs", expire_days=365, removal_policy=RemovalPolicy.RETAIN)
    cfn_bucket.versioning_configuration = s3.CfnBucket.VersioningConfigurationProperty(status="Enabled")
    cfn_bucket.logging_configuration = s3.CfnBucket.LoggingConfigurationProperty(
        destination_bucket_name=logs.bucket_name, log_file_prefix="replication/"
    )
    # S3 User Guide, "Enabling Amazon S3 server access logging": the target bucket's policy lets the logging
    # service principal write, scoped to the source bucket and account.
    logs.add_to_resource_policy(
        iam.PolicyStatement(
            principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")],
            actions=["s3:PutObject"],
            resources=[logs.arn_for_objects("replication/*")],
            conditions={
                "ArnLike": {"aws:SourceArn": bucket.bucket_arn},
                "StringEquals": {"aws:SourceAccount": stack.account},
            },
        )
    )
    for key in (c for c in stack.node.find_all() if isinstance(c, kms.CfnKey)):
        key.enable_key_rotation = True
    acknowledge(bucket, REPLICATION_RULES, REPLICATION_REASON + " This bucket holds transient pipeline artifacts.")


def _approval_comment(stage: ApprovalStage) -> str:
    """What the reviewer reads (CustomData, at most 500 characters): the stage's instructions and, where it
    fits, the reviewers it expects."""
    expected = f" Expected reviewers: {', '.join(stage.reviewers)}." if stage.reviewers else ""
    text = stage.instructions or f"{stage.name.replace('_', ' ').title()}: review before production."
    return text + expected if len(text + expected) <= 500 else text


def _output(step: pipelines.CodeBuildStep) -> pipelines.FileSet:
    assert step.primary_output is not None  # every step this is used with sets primary_output_directory
    return step.primary_output


def _logical_id(construct: Construct) -> str:
    resource = construct.node.default_child
    assert isinstance(resource, CfnElement)
    return Stack.of(construct).get_logical_id(resource)

"""A SageMaker model, endpoint config and endpoint in private subnets, with data capture."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from aws_cdk import ArnFormat, IgnoreMode, Stack, Tags
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from ml_constructs.encrypted_logs import LogPolicy
from ml_constructs.nag import acknowledge, wildcard_finding
from ml_constructs.physical_names import name_by_create_only_properties
from model_container.card import CARD_FILE, CardError, ModelCard, Task
from platform_config import EndpointSettings, ModelSource

CAPTURE_PREFIX = "capture"
VARIANT_NAME = "primary"
# The image builds from the repository root; its ignore file keeps the context to model_container/.
DOCKER_IGNORE = Path("model_container/Dockerfile.dockerignore")


@dataclass(frozen=True)
class ModelRelease:
    """What identifies a model build, read from its model card (metadata.json): name, version, task, content hash.

    The card is the one source of truth for them (model_container/card.py, a standard-library reader the CDK app
    reads as data): resource names, tags, the container's MODEL_VERSION and the serving image's labels follow it.
    """

    name: str
    version: str
    content_hash: str
    task: Task = "binary_classification"  # card.BINARY, as a Literal
    description: str = ""
    # Class names in label order (empty for regression): a multiclass batch output's probability columns.
    label_names: tuple[str, ...] = ()

    @classmethod
    def from_card(cls, card: ModelCard) -> ModelRelease:
        if not card.content_sha256:
            raise CardError(
                "model card field 'content_sha256': is required to name and tag the release (make model writes it)"
            )
        return cls(
            name=card.name,
            version=card.version,
            content_hash=card.content_sha256,
            task=cast(Task, card.task),  # validated: one of TASKS
            description=card.description,
            label_names=tuple(card.label_names),
        )

    @classmethod
    def from_metadata(cls, metadata_file: Path) -> ModelRelease:
        return cls.from_card(ModelCard.load(metadata_file))

    @classmethod
    def from_metadata_dir(cls, artifact_dir: str) -> ModelRelease:
        return cls.from_metadata(Path(artifact_dir) / CARD_FILE)

    @property
    def slug(self) -> str:
        """The version as a name fragment (`1-0-0`), for people reading names."""
        return self.version.replace(".", "-").replace("+", "-")

    @property
    def tags(self) -> dict[str, str]:
        """The model's tags on its SageMaker resources (values at most 256 characters; the hash is shortened)."""
        return {
            "model-name": self.name,
            "model-version": self.version,
            "model-task": self.task,
            "model-hash": self.content_hash[:16],
        }

    @property
    def image_build_args(self) -> dict[str, str]:
        """The serving image's labels (model_container/Dockerfile ARGs): plain strings, so synth needs no Docker."""
        return {"MODEL_NAME": self.name, "MODEL_VERSION": self.version, "MODEL_DESCRIPTION": self.description}


class ModelEndpoint(Construct):
    """Model, endpoint config (data capture, KMS volume) and endpoint; exposes `endpoint_name`, `role`.

    Model and endpoint-config names carry the model version and a digest of every create-only property
    (image, model data, environment, VPC config, variant settings, capture, keys), so any change that
    replaces them gets new names and CloudFormation updates the endpoint in place (blue/green, see
    `deployment_config`). The execution role may read `rollback_alarms` (auto-rollback needs it).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        settings: EndpointSettings,
        source: ModelSource,
        release: ModelRelease,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        data_key: kms.IKey,
        capture_bucket: s3.IBucket,
        capture_bucket_name: str,
        logs: LogPolicy,
        rollback_alarms: Sequence[cloudwatch.IAlarm] = (),
        deployment_config: sagemaker.CfnEndpoint.DeploymentConfigProperty | None = None,
        commit: str = "unknown",
        model_source: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.endpoint_name = endpoint_name
        self.variant_name = VARIANT_NAME
        self.release = release
        self.model_source = model_source
        self.role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker execution role of endpoint {endpoint_name}",
        )
        # Explicit statements in one managed policy (no inline policy), each scoped to this endpoint's things.
        self.policy = iam.ManagedPolicy(self, "ExecutionPolicy", roles=[self.role])
        model_data_url = self._model_data(source)
        image_uri = self._image(source)
        # Declared here, so that it is encrypted and expires, instead of SageMaker creating it on first start.
        logs.group(self, "Logs", f"/aws/sagemaker/Endpoints/{endpoint_name}")
        log_group_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"/aws/sagemaker/Endpoints/{endpoint_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        capture_objects = f"arn:{stack.partition}:s3:::{capture_bucket_name}/{CAPTURE_PREFIX}/{endpoint_name}/*"
        self.policy.add_statements(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[log_group_arn],
            ),
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
            ),
            *sagemaker_vpc_statements(vpc),
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[capture_objects]),
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[data_key.key_arn],
            ),
            iam.PolicyStatement(
                actions=["kms:CreateGrant"],
                resources=[data_key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ),
        )
        if rollback_alarms:
            # SageMaker Developer Guide, "Auto-Rollback Configuration and Monitoring": "Ensure that your IAM
            # execution role has permission to perform the cloudwatch:DescribeAlarms action on the
            # auto-rollback alarms you specify."
            self.policy.add_statements(
                iam.PolicyStatement(
                    actions=["cloudwatch:DescribeAlarms"], resources=[alarm.alarm_arn for alarm in rollback_alarms]
                )
            )
        acknowledge(
            self.policy,
            (
                "AwsSolutions-IAM5[Resource::*]",
                wildcard_finding(stack, log_group_arn),
                wildcard_finding(stack, capture_objects),
            ),
            "Wildcards are the narrowest IAM allows here: EC2 Describe*, ecr:GetAuthorizationToken and "
            "PutMetricData have no resource scoping (PutMetricData is limited by namespace, ENI changes by VPC); "
            "log streams and captured objects are named by SageMaker under this endpoint's own group and prefix.",
        )

        tags = {**self.release.tags, "commit": commit}
        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image_uri,
                model_data_url=model_data_url,
                environment={
                    "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60",
                    "MODEL_VERSION": self.release.version,
                    # Successful fast requests logged (model_container/README.md, "Request log sampling").
                    "MODEL_SERVER_REQUEST_LOG_SAMPLE": f"{settings.request_log_sample_percent / 100:g}",
                },
            ),
            vpc_config=sagemaker.CfnModel.VpcConfigProperty(
                subnets=vpc.select_subnets(subnet_group_name=subnets.subnet_group_name).subnet_ids,
                security_group_ids=[security_group.security_group_id],
            ),
            # The container needs no network: it reads /opt/ml/model and writes logs to stdout.
            enable_network_isolation=True,
        )
        base_name = f"{endpoint_name}-{self.release.slug}"
        model_name = name_by_create_only_properties(self.model, base=base_name, name_property="model_name")
        # CreateModel checks at creation that the role can read the model data and pull the image
        # (aws/aws-cdk#10064): the model must wait for the policy, not only for the role.
        self.model.node.add_dependency(self.policy)

        variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=VARIANT_NAME,
            # The model's name, not its attribute, so that the config's name digest changes with the model.
            model_name=model_name,
            initial_variant_weight=1.0,
            instance_type=settings.instance_type,
            initial_instance_count=settings.initial_instance_count,
            container_startup_health_check_timeout_in_seconds=settings.startup_health_check_timeout_seconds,
        )
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            production_variants=[variant],
            kms_key_id=data_key.key_arn,
            data_capture_config=sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                enable_capture=settings.data_capture_percent > 0,
                initial_sampling_percentage=settings.data_capture_percent,
                destination_s3_uri=capture_bucket.s3_url_for_object(CAPTURE_PREFIX),
                kms_key_id=data_key.key_arn,
                capture_options=[
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
                ],
                capture_content_type_header=sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
                    json_content_types=["application/json"],
                    csv_content_types=["text/csv"],
                ),
            ),
        )
        self.endpoint_config.node.add_dependency(self.model)
        name_by_create_only_properties(self.endpoint_config, base=base_name, name_property="endpoint_config_name")
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            deployment_config=deployment_config,
            retain_all_variant_properties=False,
        )
        for resource in (self.model, self.endpoint_config, self.endpoint):
            for key, value in tags.items():
                Tags.of(resource).add(key, value)

    def metric(self, metric_name: str, statistic: str = "Average") -> cloudwatch.Metric:
        """An AWS/SageMaker metric of this endpoint's variant."""
        return cloudwatch.Metric(
            namespace="AWS/SageMaker",
            metric_name=metric_name,
            statistic=statistic,
            dimensions_map={"EndpointName": self.endpoint_name, "VariantName": VARIANT_NAME},
        )

    def _model_data(self, source: ModelSource) -> str:
        # Always this build's package: `make model` leaves dist/model.tar.gz whatever the model source (a training
        # entry point, a package directory or an S3 package), so synth uploads what the card beside it describes.
        asset = s3_assets.Asset(self, "ModelData", path=str(Path(source.artifact_dir) / "model.tar.gz"))
        self.policy.add_statements(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[asset.bucket.arn_for_objects(asset.s3_object_key)])
        )
        return asset.s3_object_url

    def _image(self, source: ModelSource) -> str:
        if source.image_uri:
            repository_name = source.image_uri.split("/", 1)[1].split("@")[0].split(":")[0]
            self._allow_pull(ecr.Repository.from_repository_name(self, "ImageRepository", repository_name))
            return source.image_uri
        # Built and pushed by `cdk deploy` (or the pipeline's asset stage); synth only stages the directory.
        image = ecr_assets.DockerImageAsset(
            self,
            "ServingImage",
            directory=".",
            file="model_container/Dockerfile",
            # The image's labels name the model the card names (a build arg is a plain string: synth needs no
            # Docker, and a new version or description is a new image asset hash).
            build_args={**self.release.image_build_args, **model_source_build_arg(self.model_source)},
            exclude=_docker_ignore_patterns(),
            ignore_mode=IgnoreMode.DOCKER,
            platform=ecr_assets.Platform.LINUX_AMD64,
        )
        self._allow_pull(image.repository)
        return image.image_uri

    def _allow_pull(self, repository: ecr.IRepository) -> None:
        self.policy.add_statements(
            iam.PolicyStatement(
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=[repository.repository_arn],
            ),
            iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        )


def model_source_build_arg(source: Mapping[str, Any] | None) -> dict[str, str]:
    """The Dockerfile's build stage builds the configured model.source (cdk.json has no place in the image's
    context): without it the image bakes the default model, whose contract check fails for another model."""
    return {"MODEL_SOURCE": json.dumps(dict(source), sort_keys=True)} if source else {}


def _docker_ignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKER_IGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def sagemaker_vpc_statements(vpc: ec2.IVpc) -> list[iam.PolicyStatement]:
    """What SageMaker needs to place an endpoint's or a job's network interfaces in `vpc`: EC2 supports no
    resource scoping for the Describe calls, and the interfaces do not exist before; creation and deletion
    are held to this VPC by condition."""
    return [
        iam.PolicyStatement(
            actions=[
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeVpcs",
                "ec2:DescribeDhcpOptions",
                "ec2:DescribeSubnets",
                "ec2:DescribeSecurityGroups",
            ],
            resources=["*"],
        ),
        iam.PolicyStatement(
            actions=[
                "ec2:CreateNetworkInterface",
                "ec2:CreateNetworkInterfacePermission",
                "ec2:DeleteNetworkInterface",
                "ec2:DeleteNetworkInterfacePermission",
            ],
            resources=["*"],
            # ec2:Vpc is an ARN-typed condition key (Service Authorization Reference, Amazon EC2).
            conditions={"ArnEquals": {"ec2:Vpc": vpc.vpc_arn}},
        ),
    ]

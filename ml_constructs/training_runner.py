"""What `training.runner: sagemaker` needs in production's account: a training role, a security group in the private
subnets, the training log group, and the arguments and caller grants of scripts/training_job.py."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import ArnFormat, CfnOutput, IgnoreMode, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from ml_constructs.batch_inference import claim_account_log_group
from ml_constructs.encrypted_logs import LogPolicy
from ml_constructs.model_endpoint import sagemaker_vpc_statements
from ml_constructs.nag import acknowledge, wildcard_finding
from ml_constructs.private_network import PrivateNetwork
from platform_config import CONTEXT_KEY, ConfigError
from platform_config.loader import build
from platform_config.settings import TrainingSettings

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# The inference stack's output scripts/retrain.py reads (`--training-stack`; scripts/training_job.py
# JOB_ARGUMENTS_OUTPUT, the same name): the SSM parameter holding job_arguments() as a JSON list. Not the list itself:
# it joins the network stack's subnets and the data stack's key, and an output made of imports is what cfn-lint's
# W6001 refuses (this project's templates pass cfn-lint without warnings).
JOB_ARGUMENTS_OUTPUT = "TrainingJobArguments"
RUNNER_KEY = f"{CONTEXT_KEY}.pipeline.training.runner"
# The image builds from the repository root; its ignore file keeps the context to model_container/.
DOCKER_IGNORE = Path("model_container/Dockerfile.dockerignore")
# CreateTrainingJob's TrainingJobName: 1-63 characters; scripts/training_job.py job_name() adds -<sha12>-<UTC time>.
JOB_SUFFIX_LENGTH = 1 + 12 + 1 + 14


class TrainingRunner(Construct):
    """SageMaker training jobs of the model build (`python -m model_container.build_model train` in the image's
    `train` target), started by `python -m scripts.training_job` with `job_arguments()`.

    Where: production's inference stack, next to the endpoint: the job reads production's data (the snapshot is
    staged under `<artifacts bucket>/training/`), runs in production's private subnets with its data key, and a
    SageMaker job cannot be started across accounts.

    The job (SageMaker API reference, CreateTrainingJob): `EnableNetworkIsolation` (no network and no credentials
    in the container; SageMaker itself moves channels, checkpoints and the artefact), `VpcConfig` with this
    security group in `subnets`, the data key on the output (`OutputDataConfig.KmsKeyId`) and the volume
    (`ResourceConfig.VolumeKmsKeyId`), `EnableManagedSpotTraining` with `StoppingCondition.MaxWaitTimeInSeconds`
    (>= MaxRuntimeInSeconds) when `training.spot`, and `CheckpointConfig.S3Uri` under `checkpoint_uri` so a
    restarted spot job resumes (Developer Guide, "Managed Spot Training in Amazon SageMaker AI", "Checkpoints in
    Amazon SageMaker AI").

    The execution role (Developer Guide, "CreateTrainingJob API: Execution Role Permissions") may read the
    dataset, job and checkpoint prefixes, write the job output and checkpoint prefixes, use the data key (with
    grants only for AWS resources: the volume), pull the image from `repository`, write its job's log streams
    and metrics, and manage the job's network interfaces. The security group has no ingress and egress only HTTPS,
    to S3's gateway endpoint and to the interface endpoints' security group (`endpoint_security_group`, the one
    PrivateNetwork puts on every interface endpoint): with a VpcConfig the job's ENIs are its only network
    (Developer Guide, "Give SageMaker AI Training Jobs Access to Resources in Your Amazon VPC",
    https://docs.aws.amazon.com/sagemaker/latest/dg/train-vpc.html: S3 through the VPC endpoint), and SageMaker's
    own processes on the instance send the job's logs and metrics to CloudWatch through that VPC (re:Post Knowledge
    Center, https://repost.aws/knowledge-center/sagemaker-access-network-isolation), as the role's ECR grants pull
    the image (private_network.py COMPUTE_CALLS row `training-jobs`: ecr.api, ecr.dkr, logs, monitoring)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        settings: TrainingSettings,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        s3_prefix_list_id: str,
        endpoint_security_group: ec2.ISecurityGroup,
        data_key: kms.IKey,
        bucket_name: str,
        repository: ecr.IRepository,
        logs: LogPolicy,
        owns_training_log_group: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.settings, self.data_key, self.bucket_name = settings, data_key, bucket_name
        self.name_prefix = f"{prefix}-train"
        check_job_names(prefix)
        self.key_prefix = "training/"
        bucket_arn = f"arn:{stack.partition}:s3:::{bucket_name}"
        self.objects = {part: f"{bucket_arn}/{self.key_prefix}{part}/*" for part in ("datasets", "jobs", "checkpoints")}
        self.checkpoint_uri = f"s3://{bucket_name}/{self.key_prefix}checkpoints/"
        self.job_arns = stack.format_arn(
            service="sagemaker", resource="training-job", resource_name=f"{self.name_prefix}-*"
        )
        self.subnet_ids = vpc.select_subnets(subnet_group_name=subnets.subnet_group_name).subnet_ids
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            allow_all_outbound=False,
            description=f"{self.name_prefix} jobs: no ingress, HTTPS to S3 and the interface endpoints only",
        )
        self.security_group.add_egress_rule(
            ec2.Peer.prefix_list(s3_prefix_list_id), ec2.Port.tcp(443), "HTTPS to S3 (gateway endpoint)"
        )
        # Logs, metrics and the image through the interface endpoints: to their group, not to the whole VPC CIDR
        # (that group admits HTTPS from the VPC CIDR, which holds these subnets).
        self.security_group.add_egress_rule(
            endpoint_security_group, ec2.Port.tcp(443), "HTTPS to the interface endpoints (logs, metrics, ECR)"
        )
        self.log_group = None
        if owns_training_log_group:
            claim_account_log_group(self, TRAINING_LOG_GROUP, prefix, "TrainingRunner owns_training_log_group")
            self.log_group = logs.group(self, "TrainingJobLogs", TRAINING_LOG_GROUP)
        # Named: the pipeline's Synth role in production (stacks/step_access_stack.py) may pass only this role,
        # and is granted before this stack exists.
        self.role = iam.Role(
            self,
            "Role",
            role_name=training_role_name(prefix),
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description=f"Execution role of the {self.name_prefix} SageMaker training jobs",
        )
        self.policy = self._role_policy(
            stack, bucket_arn, repository, vpc, create_log_group=not owns_training_log_group
        )

    def _role_policy(
        self, stack: Stack, bucket_arn: str, repository: ecr.IRepository, vpc: ec2.IVpc, *, create_log_group: bool
    ) -> iam.ManagedPolicy:
        group_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{TRAINING_LOG_GROUP}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        # Stream names are `<job name>/algo-1-<epoch>`.
        streams_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{TRAINING_LOG_GROUP}:log-stream:{self.name_prefix}-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        objects = self.objects
        policy = iam.ManagedPolicy(
            self,
            "RolePolicy",
            roles=[self.role],
            description=f"{self.name_prefix} jobs: channels, output, checkpoints, data key, image, logs, ENIs",
            statements=[
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{self.key_prefix}*"]}},
                ),
                # Channels (datasets/, the parent under jobs/<name>/parent/) and checkpoints restored on a restart.
                iam.PolicyStatement(actions=["s3:GetObject"], resources=list(objects.values())),
                iam.PolicyStatement(
                    actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                    resources=[objects["jobs"], objects["checkpoints"]],
                ),
                # OutputDataConfig.KmsKeyId (SageMaker API Reference): "the SageMaker execution role must include
                # permissions to call kms:Encrypt"; Decrypt/GenerateDataKey for the channels and checkpoints.
                iam.PolicyStatement(
                    actions=["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                    resources=[self.data_key.key_arn],
                ),
                # VolumeKmsKeyId: the volume is encrypted through a grant to EBS.
                iam.PolicyStatement(
                    actions=["kms:CreateGrant"],
                    resources=[self.data_key.key_arn],
                    conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
                ),
                iam.PolicyStatement(
                    actions=["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
                    resources=[repository.repository_arn],
                ),
                iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]),
                iam.PolicyStatement(
                    actions=[*(["logs:CreateLogGroup"] if create_log_group else []), "logs:DescribeLogStreams"],
                    resources=[group_arn],
                ),
                iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[streams_arn]),
                iam.PolicyStatement(
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}},
                ),
                # SageMaker Developer Guide, "CreateTrainingJob API: Execution Role Permissions" (VPC configuration):
                # the job's network interfaces, created and deleted only in this VPC.
                *sagemaker_vpc_statements(vpc),
            ],
        )
        acknowledge(
            policy,
            [wildcard_finding(stack, arn) for arn in (*objects.values(), group_arn, streams_arn)],
            "Snapshots are named by their hash, jobs and their log streams by the job: unknown at synth; each "
            "wildcard stays under this environment's training/ prefix or its job names.",
        )
        acknowledge(
            policy,
            ("AwsSolutions-IAM5[Resource::*]",),
            "ecr:GetAuthorizationToken, cloudwatch:PutMetricData (held to SageMaker's namespace) and the EC2 network "
            "interface actions SageMaker takes for a job in a VPC have no resource type or act on interfaces created "
            "for the job (SageMaker Developer Guide, 'CreateTrainingJob API: Execution Role Permissions').",
        )
        return policy

    def job_arguments(self, image_uri: str) -> list[str]:
        """scripts/training_job.py's arguments for this environment (with --dataset, --parent, --out, --region)."""
        settings = self.settings
        return [
            f"--bucket {self.bucket_name}",
            f"--prefix {self.key_prefix}",
            f"--image-uri {image_uri}",
            f"--role-arn {self.role.role_arn}",
            f"--kms-key-arn {self.data_key.key_arn}",
            f"--subnets {','.join(self.subnet_ids)}",
            f"--security-group-ids {self.security_group.security_group_id}",
            f"--name-prefix {self.name_prefix}",
            f"--instance-type {settings.instance_type}",
            f"--volume-size-gb {settings.volume_size_gb}",
            "--spot" if settings.spot else "--no-spot",
            f"--max-runtime-seconds {settings.max_runtime_seconds}",
            f"--max-wait-seconds {settings.max_wait_seconds}",
        ]

    def caller_statements(self, partition: str, region: str, account: str) -> list[iam.PolicyStatement]:
        """What the caller of scripts/training_job.py needs (`caller_statements` for this runner)."""
        return caller_statements(
            prefix=self.name_prefix.removesuffix("-train"),
            settings=self.settings,
            bucket_name=self.bucket_name,
            partition=partition,
            region=region,
            account=account,
        )


def training_role_name(prefix: str) -> str:
    """The training jobs' execution role (IAM role names: at most 64 characters)."""
    return f"{prefix}-training-jobs"[:64]


def check_job_names(prefix: str) -> None:
    """CreateTrainingJob's TrainingJobName is 1-63 characters (API reference): `<prefix>-train-<sha12>-<time>`."""
    if len(f"{prefix}-train") + JOB_SUFFIX_LENGTH > 63:
        raise ConfigError(
            RUNNER_KEY,
            f"'sagemaker' names jobs {prefix}-train-<sha12>-<UTC time>, longer than the 63 characters "
            "CreateTrainingJob allows: shorten the environment's resource prefix or use 'build'",
        )


def caller_statements(
    *, prefix: str, settings: TrainingSettings, bucket_name: str, partition: str, region: str, account: str
) -> list[iam.PolicyStatement]:
    """What the caller of scripts/training_job.py needs (the pipeline's Synth role in production): read the
    runner's arguments (the SSM parameter the inference stack's output names), start and watch only this
    environment's jobs (`<prefix>-train-*`) network-isolated, in a VPC, encrypted with a key of the account and
    of the configured instance type (Service Authorization Reference, Amazon SageMaker: CreateTrainingJob condition
    keys), pass only the training role to SageMaker, stage inputs and read the artefact under training/.

    Built from names only: the Synth role's grants deploy in the StepAccess stage, before the inference stack that
    creates the runner, so its security group, subnets and data key id cannot be named (their ids are unknown until
    then); the `Null` conditions make the job's VPC configuration and keys mandatory instead, and the role it runs
    as (the only one it may pass) reads and writes only the runner's prefixes."""
    jobs = f"arn:{partition}:sagemaker:{region}:{account}:training-job/{prefix}-train-*"
    keys = f"arn:{partition}:kms:{region}:{account}:key/*"
    objects = [f"arn:{partition}:s3:::{bucket_name}/training/{part}/*" for part in ("datasets", "jobs")]
    stack = f"arn:{partition}:cloudformation:{region}:{account}:stack/{prefix}-inference/*"
    parameter = f"arn:{partition}:ssm:{region}:{account}:parameter{job_arguments_parameter(prefix)}"
    return [
        iam.PolicyStatement(actions=["cloudformation:DescribeStacks"], resources=[stack]),
        iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[parameter]),
        iam.PolicyStatement(
            actions=["sagemaker:CreateTrainingJob"],
            resources=[jobs],
            conditions={
                "Bool": {"sagemaker:NetworkIsolation": "true", "sagemaker:InterContainerTrafficEncryption": "true"},
                "Null": {
                    "sagemaker:VpcSubnets": "false",
                    "sagemaker:VpcSecurityGroupIds": "false",
                    "sagemaker:VolumeKmsKey": "false",
                    "sagemaker:OutputKmsKey": "false",
                },
                "ArnLike": {"sagemaker:VolumeKmsKey": keys, "sagemaker:OutputKmsKey": keys},
                "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": [settings.instance_type]},
            },
        ),
        iam.PolicyStatement(actions=["sagemaker:DescribeTrainingJob", "sagemaker:AddTags"], resources=[jobs]),
        iam.PolicyStatement(
            actions=["iam:PassRole"],
            resources=[f"arn:{partition}:iam::{account}:role/{training_role_name(prefix)}"],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ),
        iam.PolicyStatement(actions=["s3:PutObject", "s3:GetObject"], resources=objects),
        # The artifacts bucket and the job output are encrypted with the data key, known here by its alias only.
        iam.PolicyStatement(
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resources=[keys],
            conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/{prefix}/data"}},
        ),
    ]


def caller_wildcards(*, prefix: str, bucket_name: str, partition: str, region: str, account: str) -> list[str]:
    """The prefix-scoped resources among `caller_statements` (one IAM5 acknowledgement each)."""
    return [
        f"arn:{partition}:cloudformation:{region}:{account}:stack/{prefix}-inference/*",
        f"arn:{partition}:sagemaker:{region}:{account}:training-job/{prefix}-train-*",
        f"arn:{partition}:kms:{region}:{account}:key/*",
        *(f"arn:{partition}:s3:::{bucket_name}/training/{part}/*" for part in ("datasets", "jobs")),
    ]


def pipeline_training(scope: Construct, environment: str) -> TrainingSettings | None:
    """The pipeline's `training` settings when they run SageMaker training jobs in `environment`: the pipeline's
    production (the only environment whose data a retraining run reads), with `training.runner: sagemaker`;
    else None. Read from the app's context, which the app validated before building any stage (as
    ml_constructs/model_registry.py `registry_access` reads the pipeline's production)."""
    context = scope.node.try_get_context(CONTEXT_KEY)
    pipeline = context.get("pipeline") if isinstance(context, Mapping) else None
    if not isinstance(pipeline, Mapping) or environment != str(pipeline.get("production", "prod")):
        return None
    training = build(TrainingSettings, pipeline.get("training") or {}, f"{CONTEXT_KEY}.pipeline.training")
    return training if training.runner == "sagemaker" else None


def add_training_runner(
    scope: Construct,
    *,
    prefix: str,
    settings: TrainingSettings,
    network: PrivateNetwork,
    data_key: kms.IKey,
    bucket_name: str,
    logs: LogPolicy,
    build_args: Mapping[str, str] | None = None,
) -> TrainingRunner:
    """The Dockerfile's `train` target as an image asset (linux/amd64: SageMaker's ml.* x86 instances, whatever
    machine deploys), the runner in the environment's inference subnets, and the `TrainingJobArguments` output
    the pipeline's Synth step reads through production's profile (scripts/retrain.py --training-stack)."""
    image = ecr_assets.DockerImageAsset(
        scope,
        "TrainingImage",
        directory=".",
        file="model_container/Dockerfile",
        target="train",
        # MODEL_SOURCE: the train target's build stage builds the configured model (model_endpoint.py).
        build_args=dict(build_args or {}),
        exclude=_docker_ignore_patterns(),
        ignore_mode=IgnoreMode.DOCKER,
        platform=ecr_assets.Platform.LINUX_AMD64,
    )
    runner = TrainingRunner(
        scope,
        "Training",
        prefix=prefix,
        settings=settings,
        vpc=network.vpc,
        subnets=network.inference_subnets,
        s3_prefix_list_id=network.gateway_prefix_lists.ids["s3"],
        endpoint_security_group=network.endpoint_security_group,
        data_key=data_key,
        bucket_name=bucket_name,
        repository=image.repository,
        logs=logs,
        owns_training_log_group=settings.owns_log_group,
    )
    stack = Stack.of(scope)
    ssm.StringParameter(
        scope,
        "TrainingJobArgumentsParameter",
        parameter_name=job_arguments_parameter(prefix),
        description="scripts/training_job.py arguments of this environment's SageMaker training jobs (JSON list)",
        string_value=stack.to_json_string(runner.job_arguments(image.image_uri)),
    )
    CfnOutput(
        scope,
        JOB_ARGUMENTS_OUTPUT,
        description="The SSM parameter with scripts/training_job.py's arguments for this environment's training jobs",
        value=job_arguments_parameter(prefix),
    )
    return runner


def job_arguments_parameter(prefix: str) -> str:
    """The SSM parameter (String: ids and ARNs, no secret) holding the runner's job_arguments() as JSON."""
    return f"/{prefix}/training/job-arguments"


def _docker_ignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKER_IGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]

"""What `training.runner: sagemaker` needs in production's account: a training role, a security group in the private
subnets, the training log group, and the arguments and caller grants of scripts/training_job.py."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from ml_constructs.batch_inference import claim_account_log_group
from ml_constructs.encrypted_logs import LogPolicy
from ml_constructs.nag import acknowledge, wildcard_finding
from platform_config.settings import TrainingSettings

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# CreateTrainingJob's TrainingJobName: 1-63 characters; scripts/training_job.py job_name() adds -<sha12>-<UTC time>.
JOB_SUFFIX_LENGTH = 1 + 12 + 1 + 14
# SageMaker Developer Guide, "CreateTrainingJob API: Execution Role Permissions" (VPC configuration): the ENI
# actions SageMaker takes for a job in a VPC. EC2's Describe* have no resource type; SageMaker creates the job's
# network interfaces before their ids exist.
ENI_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
]


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
    and metrics, and manage the job's network interfaces. The security group has no ingress and egress only HTTPS
    to S3's gateway endpoint (Developer Guide, "Give SageMaker AI Training Jobs Access to Resources in Your Amazon
    VPC": a job in a private subnet reaches S3 through the VPC endpoint)."""

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
        if len(self.name_prefix) + JOB_SUFFIX_LENGTH > 63:
            raise ValueError(f"training job names {self.name_prefix}-<sha12>-<time> exceed 63 characters")
        self.key_prefix = "training/"
        bucket_arn = f"arn:{stack.partition}:s3:::{bucket_name}"
        self.objects = {
            part: f"{bucket_arn}/{self.key_prefix}{part}/*" for part in ("datasets", "jobs", "checkpoints")
        }
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
            description=f"{self.name_prefix} jobs: no ingress, HTTPS to S3 only",
        )
        self.security_group.add_egress_rule(
            ec2.Peer.prefix_list(s3_prefix_list_id), ec2.Port.tcp(443), "HTTPS to S3 (gateway endpoint)"
        )
        self.log_group = None
        if owns_training_log_group:
            claim_account_log_group(self, TRAINING_LOG_GROUP, prefix, "TrainingRunner owns_training_log_group")
            self.log_group = logs.group(self, "TrainingJobLogs", TRAINING_LOG_GROUP)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description=f"Execution role of the {self.name_prefix} SageMaker training jobs",
        )
        self.policy = self._role_policy(stack, bucket_arn, repository, create_log_group=not owns_training_log_group)

    def _role_policy(
        self, stack: Stack, bucket_arn: str, repository: ecr.IRepository, *, create_log_group: bool
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
                iam.PolicyStatement(
                    actions=["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
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
                iam.PolicyStatement(actions=ENI_ACTIONS, resources=["*"]),
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
        """What the caller of scripts/training_job.py needs (the pipeline's Synth role): start and watch only this
        environment's jobs, in its subnets and group, with network isolation, the data key and the configured
        instance type (Service Authorization Reference, SageMaker: CreateTrainingJob condition keys); pass only
        the training role to SageMaker; stage inputs and read the artefact under training/."""
        jobs = f"arn:{partition}:sagemaker:{region}:{account}:training-job/{self.name_prefix}-*"
        return [
            iam.PolicyStatement(
                actions=["sagemaker:CreateTrainingJob"],
                resources=[jobs],
                conditions={
                    "Bool": {"sagemaker:NetworkIsolation": "true"},
                    "ArnEquals": {
                        "sagemaker:VolumeKmsKey": self.data_key.key_arn,
                        "sagemaker:OutputKmsKey": self.data_key.key_arn,
                    },
                    "ForAllValues:StringEquals": {
                        "sagemaker:VpcSubnets": list(self.subnet_ids),
                        "sagemaker:VpcSecurityGroupIds": [self.security_group.security_group_id],
                        "sagemaker:InstanceTypes": [self.settings.instance_type],
                    },
                },
            ),
            iam.PolicyStatement(actions=["sagemaker:DescribeTrainingJob", "sagemaker:AddTags"], resources=[jobs]),
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:GetObject"],
                resources=[self.objects["datasets"], self.objects["jobs"]],
            ),
            iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self.data_key.key_arn]),
        ]


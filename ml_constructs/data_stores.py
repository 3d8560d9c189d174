"""The platform's buckets: model artifacts, endpoint data capture, monitoring reports, access logs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ml_constructs.secure_bucket import access_log_bucket, secure_bucket
from platform_config import DataSettings


class DataStores(Construct):
    """Exposes `artifacts_bucket`, `capture_bucket`, `monitoring_bucket` and `access_logs_bucket`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        settings: DataSettings,
        key: kms.IKey,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs_bucket = access_log_bucket(
            self, "AccessLogs", expire_days=settings.access_logs_expire_days, removal_policy=removal_policy
        )
        stack = Stack.of(self)
        # Known names let other stacks scope IAM to a bucket without a cross-stack export.
        self.capture_bucket_name = f"{prefix}-capture-{stack.account}-{stack.region}"
        self.artifacts_bucket_name = f"{prefix}-artifacts-{stack.account}-{stack.region}"
        self.monitoring_bucket_name = f"{prefix}-monitoring-{stack.account}-{stack.region}"

        def bucket(name: str, rules: list[s3.LifecycleRule], bucket_name: str | None = None) -> s3.Bucket:
            return secure_bucket(
                self,
                name,
                key=key,
                access_logs=self.access_logs_bucket,
                removal_policy=removal_policy,
                lifecycle_rules=rules,
                bucket_name=bucket_name,
            )

        self.artifacts_bucket = bucket(
            "ModelArtifacts",
            [
                s3.LifecycleRule(
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INTELLIGENT_TIERING,
                            transition_after=Duration.days(0),
                        )
                    ],
                    noncurrent_version_transitions=[
                        s3.NoncurrentVersionTransition(
                            storage_class=s3.StorageClass.GLACIER,
                            transition_after=Duration.days(settings.noncurrent_artifacts_to_glacier_days),
                        )
                    ],
                    noncurrent_version_expiration=Duration.days(settings.noncurrent_artifacts_expire_days),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
            bucket_name=self.artifacts_bucket_name,
        )
        self.capture_bucket = bucket(
            "DataCapture",
            [
                s3.LifecycleRule(
                    expiration=Duration.days(settings.capture_expire_days),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            bucket_name=self.capture_bucket_name,
        )
        self.monitoring_bucket = bucket(
            "MonitoringReports",
            [
                s3.LifecycleRule(
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INTELLIGENT_TIERING,
                            transition_after=Duration.days(0),
                        )
                    ],
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            bucket_name=self.monitoring_bucket_name,
        )

"""A CloudTrail trail, encrypted and validated, for accounts without an organisation trail."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ml_constructs.encrypted_logs import encrypted_log_group
from ml_constructs.nag import acknowledge
from ml_constructs.secure_bucket import secure_bucket


class AuditTrail(Construct):
    """Multi-region trail to a KMS-encrypted bucket and log group, with log file validation. Exposes `trail`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        access_logs: s3.IBucket,
        retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        bucket = secure_bucket(self, "TrailBucket", key=key, access_logs=access_logs, removal_policy=removal_policy)
        log_group = encrypted_log_group(
            self, "TrailLogs", key=key, retention_days=retention_days, removal_policy=removal_policy
        )
        self.trail = cloudtrail.Trail(
            self,
            "Trail",
            bucket=bucket,
            encryption_key=key,
            enable_file_validation=True,
            include_global_service_events=True,
            is_multi_region_trail=True,
            send_to_cloud_watch_logs=True,
            cloud_watch_log_group=log_group,
        )
        acknowledge(
            self.trail.node.find_child("LogsRole"),
            ("HIPAA.Security-IAMNoInlinePolicy", "NIST.800.53.R5-IAMNoInlinePolicy", "PCI.DSS.321-IAMNoInlinePolicy"),
            "Role created by the CloudTrail L2 for cloudtrail.amazonaws.com only; its inline policy allows "
            "CreateLogStream/PutLogEvents on this trail's log group alone and lives and dies with the trail.",
        )

"""S3 buckets that are private, TLS-only, versioned and encrypted, with access logs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ml_constructs.nag import acknowledge


def secure_bucket(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    access_logs: s3.IBucket,
    removal_policy: RemovalPolicy,
    lifecycle_rules: list[s3.LifecycleRule] | None = None,
    bucket_name: str | None = None,
) -> s3.Bucket:
    """A bucket for platform data: KMS with a bucket key, TLS only, no public access, logs to `access_logs`."""
    bucket = s3.Bucket(
        scope,
        construct_id,
        bucket_name=bucket_name,
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        bucket_key_enabled=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=f"{construct_id}/",
        lifecycle_rules=lifecycle_rules,
        removal_policy=removal_policy,
    )
    acknowledge(bucket, REPLICATION_RULES, REPLICATION_REASON)
    return bucket


def access_log_bucket(
    scope: Construct, construct_id: str, *, expire_days: int, removal_policy: RemovalPolicy
) -> s3.Bucket:
    """The sink of S3 server access logs: SSE-S3 (log delivery cannot use SSE-KMS), private, TLS only."""
    bucket = s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
        lifecycle_rules=[
            s3.LifecycleRule(expiration=Duration.days(expire_days), noncurrent_version_expiration=Duration.days(1))
        ],
        removal_policy=removal_policy,
    )
    acknowledge(
        bucket,
        (
            "AwsSolutions-S1",
            "HIPAA.Security-S3BucketLoggingEnabled",
            "NIST.800.53.R5-S3BucketLoggingEnabled",
            "PCI.DSS.321-S3BucketLoggingEnabled",
        ),
        "This is the access-log sink itself; logging it into itself would loop.",
    )
    acknowledge(
        bucket,
        (
            "HIPAA.Security-S3DefaultEncryptionKMS",
            "NIST.800.53.R5-S3DefaultEncryptionKMS",
            "PCI.DSS.321-S3DefaultEncryptionKMS",
        ),
        "S3 server access log delivery supports only SSE-S3 on the target bucket; it holds request "
        "metadata, no model or customer data.",
    )
    acknowledge(bucket, REPLICATION_RULES, REPLICATION_REASON)
    return bucket


REPLICATION_RULES = (
    "HIPAA.Security-S3BucketReplicationEnabled",
    "NIST.800.53.R5-S3BucketReplicationEnabled",
    "PCI.DSS.321-S3BucketReplicationEnabled",
)
REPLICATION_REASON = (
    "Single-region platform by design: versioning and retention protect against deletion, model artifacts "
    "are rebuilt from source by the pipeline, and capture/report data are short-lived telemetry. "
    "Cross-region replication needs a second-region KMS key and is a per-organisation DR decision."
)

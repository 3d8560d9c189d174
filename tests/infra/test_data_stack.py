"""Every bucket is private, TLS-only, versioned and encrypted; keys rotate; the trail is validated."""

from __future__ import annotations

import pytest

ENVS = ("dev", "staging", "prod")


def bucket_policies(synthesized, env: str) -> list[dict]:
    return [p["Properties"] for p in synthesized.resources(env, "data", "AWS::S3::BucketPolicy").values()]


@pytest.mark.parametrize("env", ENVS)
def test_every_bucket_is_private_encrypted_versioned_and_tls_only(synthesized, env: str) -> None:
    buckets = synthesized.resources(env, "data", "AWS::S3::Bucket")
    assert len(buckets) == 5  # access logs, artifacts, capture, monitoring, trail
    policies = bucket_policies(synthesized, env)
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, logical_id
        [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        algorithm = rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
        # Only the access-log sink uses SSE-S3: log delivery cannot write to SSE-KMS buckets.
        assert algorithm == ("AES256" if logical_id.startswith("StoresAccessLogs") else "aws:kms"), logical_id
        [policy] = [p for p in policies if p["Bucket"] == {"Ref": logical_id}]
        denies = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert any(s["Condition"].get("Bool", {}).get("aws:SecureTransport") == "false" for s in denies), logical_id
        assert any("s3:TlsVersion" in s["Condition"].get("NumericLessThan", {}) for s in denies), logical_id
        if not logical_id.startswith("StoresAccessLogs"):
            assert props["LoggingConfiguration"]["DestinationBucketName"]["Ref"].startswith("StoresAccessLogs")


@pytest.mark.parametrize(("env", "glacier_days", "expire_days"), [("dev", 30, 365), ("prod", 60, 730)])
def test_artifacts_move_to_intelligent_tiering_and_old_versions_to_glacier(
    synthesized, env: str, glacier_days: int, expire_days: int
) -> None:
    [artifacts] = [
        b
        for k, b in synthesized.resources(env, "data", "AWS::S3::Bucket").items()
        if k.startswith("StoresModelArtifacts")
    ]
    [rule] = artifacts["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Transitions"] == [{"StorageClass": "INTELLIGENT_TIERING", "TransitionInDays": 0}]
    assert rule["NoncurrentVersionTransitions"] == [{"StorageClass": "GLACIER", "TransitionInDays": glacier_days}]
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": expire_days}


@pytest.mark.parametrize(("env", "policy"), [("dev", "Delete"), ("staging", "Retain"), ("prod", "Retain")])
def test_stateful_resources_are_retained_outside_dev(synthesized, env: str, policy: str) -> None:
    for resource_type in ("AWS::S3::Bucket", "AWS::KMS::Key", "AWS::Logs::LogGroup"):
        for resource in synthesized.resources(env, "data", resource_type).values():
            assert resource["DeletionPolicy"] == policy


@pytest.mark.parametrize("env", ENVS)
def test_keys_rotate(synthesized, env: str) -> None:
    keys = synthesized.resources(env, "data", "AWS::KMS::Key").values()
    assert len(keys) == 2
    assert all(k["Properties"]["EnableKeyRotation"] for k in keys)


@pytest.mark.parametrize("env", ENVS)
def test_trail_is_encrypted_multi_region_and_validated(synthesized, env: str) -> None:
    [trail] = synthesized.resources(env, "data", "AWS::CloudTrail::Trail").values()
    props = trail["Properties"]
    assert props["EnableLogFileValidation"] is True
    assert props["IsMultiRegionTrail"] is True
    assert "KMSKeyId" in props and "CloudWatchLogsLogGroupArn" in props

"""The drift job compares a version's traffic with the baseline of the build that served it (issue 13 item 11): the
release history (RELEASES_TABLE) names the build, as the endpoint's 16-character model-hash, and the job reads that
build's baseline even though a candidate published another under the same model version."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from drift_test_data import FEATURES, metadata, sample_features, to_csv

from lambda_src.releases.release_history.repository import Release, ReleaseRepository, Status
from tests.lambda_src.drift_monitor.test_handler_integration import (
    HOUR,
    SCHEDULED,
    FakeContext,
    Platform,
    _traffic,
    load_handler,
    platform,
)

__all__ = ["platform"]  # the imported fixture, requested by name below
VERSION = "1.0.0"


def publish(platform: Platform, model: bytes, shift: dict[int, float] | None = None) -> str:
    """A build's baseline in scripts/publish_baseline.py's layout: `baselines/<sha256>/` plus the version index."""
    digest = hashlib.sha256(model).hexdigest()
    values = sample_features(platform.rng, 500, shift)
    document = {**metadata(VERSION, FEATURES, values), "content_sha256": digest}
    root = f"baselines/{digest}/"
    platform.s3.put_object(Bucket="models", Key=root + "metadata.json", Body=json.dumps(document))
    platform.s3.put_object(Bucket="models", Key=root + "baseline.csv", Body=to_csv(values))
    platform.s3.put_object(Bucket="models", Key=f"baselines/_versions/{VERSION}/{digest}", Body=b"")
    return digest


def release(platform: Platform, release_id: str, status: Status, digest: str, at: str) -> None:
    ReleaseRepository(platform.releases, "churn-ep").register(
        Release(release_id, "churn-ep", status, at, model_version=VERSION, model_hash=digest[:16],
                status_changed_at=at)
    )  # fmt: skip


def two_builds(platform: Platform) -> tuple[str, str]:
    live = publish(platform, b"live-model")
    # The prod candidate: published before its deploy, under the same version, then rolled back. Its training
    # data differs so much that comparing the live model's traffic with it would report drift.
    candidate = publish(platform, b"candidate-model", shift={0: 5.0, 1: 5.0})
    platform.add_capture(HOUR, "a", _traffic(platform, 300, VERSION))
    return live, candidate


def test_the_report_names_the_served_builds_baseline_and_finds_no_drift(platform: Platform) -> None:
    live, candidate = two_builds(platform)
    release(platform, "cfg-candidate", Status.ROLLED_BACK, candidate, "2026-11-25T12:30:00Z")
    release(platform, "cfg-live", Status.LIVE, live, "2026-11-01T10:00:00Z")

    result = load_handler()(SCHEDULED, FakeContext())

    baseline: dict[str, Any] = platform.report(VERSION)["baseline"]
    assert baseline["uri"] == f"s3://models/baselines/{live}/"
    assert baseline["content_hash"] == live and baseline["served_content_hash"] == live[:16]
    assert result["drift_detected"] is False and platform.report(VERSION)["status"] == "no_drift"


def test_without_a_release_record_two_builds_of_a_version_are_an_error_not_a_guess(platform: Platform) -> None:
    two_builds(platform)
    result = load_handler()(SCHEDULED, FakeContext())
    report = platform.report(VERSION)
    assert report["status"] == "baseline_error" and "2 published baselines" in report["error"]
    assert result["drift_detected"] is False and platform.drift_events() == []

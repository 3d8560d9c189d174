from datetime import UTC, datetime

import pytest
from drift_engine.settings import Settings, parse_thresholds
from drift_engine.window import resolve_window

ENV = {
    "ENDPOINT_NAME": "ep",
    "CAPTURE_BUCKET": "capture",
    "BASELINE_BUCKET": "models",
    "REPORT_BUCKET": "monitoring",
}


def test_settings_defaults_and_prefixes() -> None:
    settings = Settings.from_env({**ENV, "CAPTURE_PREFIX": "/data-capture/"})
    assert settings.capture_root == "data-capture/ep/AllTraffic/"
    assert settings.baseline_prefix == "baselines/"
    assert settings.window_hours == 1
    assert settings.ground_truth_root is None
    assert settings.ground_truth_bucket == "capture"
    assert Settings.from_env({**ENV, "CAPTURE_PREFIX": ""}).capture_root == "ep/AllTraffic/"


def test_settings_require_endpoint_and_buckets() -> None:
    with pytest.raises(KeyError):
        Settings.from_env({"ENDPOINT_NAME": "ep"})
    with pytest.raises(ValueError, match="PROBABILITY_OF"):
        Settings.from_env({**ENV, "PROBABILITY_OF": "maybe"})


def test_thresholds_defaults_and_per_feature_overrides() -> None:
    config = parse_thresholds('{"psi_alarm": 0.3, "min_samples": 10, "features": {"feature_b": {"psi_warn": 0.2}}}')
    assert config.for_feature("feature_a").psi_alarm == 0.3
    area = config.for_feature("feature_b")
    assert (area.psi_warn, area.psi_alarm, area.min_samples) == (0.2, 0.3, 10)  # override inherits defaults
    assert parse_thresholds(None).default.psi_alarm == 0.25
    with pytest.raises(ValueError, match="unknown threshold keys"):
        parse_thresholds('{"psi_alrm": 0.3}')


def test_scheduled_run_covers_the_previous_whole_hours() -> None:
    window = resolve_window({"time": "2026-11-25T13:05:42Z"}, default_hours=1)
    assert window.as_dict() == {"start": "2026-11-25T12:00:00Z", "end": "2026-11-25T13:00:00Z"}
    assert window.hour_prefixes("dc/ep/v/") == ["dc/ep/v/2026/11/25/12/"]


def test_backfill_window_from_event_crosses_midnight() -> None:
    window = resolve_window({"window_start": "2026-11-25T23:30:00+00:00", "window_hours": 2}, default_hours=1)
    assert window.hour_prefixes("") == ["2026/11/25/23/", "2026/11/26/00/"]
    end_based = resolve_window({"window_end": "2026-11-26T01:00:00Z"}, default_hours=3)
    assert end_based.as_dict()["start"] == "2026-11-25T22:00:00Z"


def test_window_without_event_time_uses_now() -> None:
    now = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    assert resolve_window({}, 1, now=now).as_dict()["start"] == "2025-12-31T23:00:00Z"
    with pytest.raises(ValueError):
        resolve_window({"window_hours": -1}, 1)

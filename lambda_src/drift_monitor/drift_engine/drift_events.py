"""EventBridge "Model Drift Detected" events (shape documented in EVENTS.md)."""

import json
from collections.abc import Sequence
from typing import Any

from drift_engine.reports import VersionReport
from drift_engine.settings import Settings
from drift_engine.window import Window

EVENT_SOURCE = "ml-platform.drift-monitor"
DETAIL_TYPE = "Model Drift Detected"
MAX_ENTRIES_PER_CALL = 10  # PutEvents limit


class EventPublishError(RuntimeError):
    """EventBridge rejected one or more entries."""


def drift_detail(settings: Settings, window: Window, report: VersionReport) -> dict[str, Any]:
    return {
        "endpointName": settings.endpoint_name,
        "variantName": settings.variant_name,
        "modelVersion": report.model_version,
        "window": window.as_dict(),
        "rowsAnalysed": report.rows,
        "driftedFeatures": [
            {
                "feature": result.feature,
                "psi": result.psi,
                "ksStatistic": result.ks_statistic,
                "ksPValue": result.ks_p_value,
                "reasons": result.reasons,
            }
            for result in report.drifted
        ],
        "reportUri": report.report_uri,
    }


def publish_drift_events(events: Any, settings: Settings, window: Window, reports: Sequence[VersionReport]) -> int:
    """One event per model version with at least one feature at alarm level; returns events sent."""
    entries = [
        {
            "Source": EVENT_SOURCE,
            "DetailType": DETAIL_TYPE,
            "Detail": json.dumps(drift_detail(settings, window, report)),
            "EventBusName": settings.event_bus_name,
        }
        for report in reports
        if report.drifted
    ]
    for start in range(0, len(entries), MAX_ENTRIES_PER_CALL):
        response = events.put_events(Entries=entries[start : start + MAX_ENTRIES_PER_CALL])
        if response.get("FailedEntryCount"):
            failures = [entry for entry in response["Entries"] if entry.get("ErrorCode")]
            raise EventPublishError(f"put_events failed: {failures}")
    return len(entries)

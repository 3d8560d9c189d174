"""Builders for synthetic baselines and SageMaker capture records used by the drift tests."""

import base64
import json
from typing import Any

import numpy as np

# A synthetic schema of its own (no shipped model's): tests of a real package read its card (test_drift_on_served_
# traffic.py); these read WIDTH and FEATURES, never a count or a name of their own.
WIDTH = 24
FEATURES = [f"feature_{i:02d}" for i in range(WIDTH)]
MEANS = np.linspace(1.0, 30.0, len(FEATURES))
SCALES = MEANS / 10.0


def sample_features(rng: np.random.Generator, rows: int, shift: dict[int, float] | None = None) -> np.ndarray:
    """Normal features; `shift` moves column i by that many standard deviations."""
    values = rng.normal(MEANS, SCALES, size=(rows, len(FEATURES)))
    for column, sds in (shift or {}).items():
        values[:, column] += sds * SCALES[column]
    return values


def metadata(version: str, names: list[str], baseline: np.ndarray) -> dict[str, Any]:
    return {
        "model_name": "synthetic-model",
        "model_version": version,
        "content_sha256": f"sha256:{version}",
        "feature_schema": {
            "features": [
                {
                    "name": name,
                    "type": "number",
                    "minimum": float(baseline[:, i].min()),
                    "maximum": float(baseline[:, i].max()),
                    "required": True,
                }
                for i, name in enumerate(names)
            ]
        },
    }


def to_csv(matrix: np.ndarray) -> str:
    return "\n".join(",".join(f"{value:.6f}" for value in row) for row in matrix) + "\n"


def capture_line(
    rows: list[list[float]] | list[dict[str, float]],
    probabilities: list[float],
    version: str | None,
    encoding: str = "JSON",
    event_id: str = "evt",
    inference_id: str | None = None,
) -> str:
    """A data-capture JSON line whose request body holds `rows` in the given encoding."""
    if encoding in ("CSV", "BASE64-CSV"):
        body = "\n".join(",".join(str(v) for v in row) for row in rows)
        content_type = "text/csv"
    else:
        body = json.dumps({"instances": rows})
        content_type = "application/json"
    if encoding.startswith("BASE64"):
        body, wire = base64.b64encode(body.encode()).decode(), "BASE64"
    else:
        wire = encoding
    predictions = [
        {
            "label": int(p >= 0.5),
            "probability": p,  # P(label = 1), as the serving container reports it
            **({"model_version": version} if version else {}),
        }
        for p in probabilities
    ]
    metadata: dict[str, str] = {"eventId": event_id, "inferenceTime": "2026-11-25T12:00:00Z"}
    if inference_id:
        metadata["inferenceId"] = inference_id
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {"observedContentType": content_type, "mode": "INPUT", "data": body, "encoding": wire},
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": json.dumps({"predictions": predictions}),
                    "encoding": "JSON",
                },
            },
            "eventMetadata": metadata,
            "eventVersion": "0",
        }
    )

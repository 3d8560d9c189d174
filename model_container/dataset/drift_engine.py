"""The drift engine's capture reader and ground-truth join, imported the way its Lambda and its tests import them.

The engine's modules import each other as the top-level package `drift_engine` (the Lambda's code root is
lambda_src/drift_monitor), so that directory goes on sys.path, appended so that the repository's own modules
(its `app.py`) keep precedence, exactly as tests/lambda_src/drift_monitor/conftest.py does. Importing this
module needs the repository checkout; the model build without captured traffic never imports it.
"""

from __future__ import annotations

import sys
from pathlib import Path

ENGINE_ROOT = Path(__file__).resolve().parents[2] / "lambda_src" / "drift_monitor"
if not (ENGINE_ROOT / "drift_engine").is_dir():
    raise ImportError(f"the drift engine is not at {ENGINE_ROOT}: join captured traffic from the repository checkout")
if str(ENGINE_ROOT) not in sys.path:
    sys.path.append(str(ENGINE_ROOT))

from drift_engine.capture_records import CaptureBatch, CapturedRow, CaptureStats, iter_capture_records, row_version  # noqa: E402
from drift_engine.feature_drift import rows_to_matrix  # noqa: E402
from drift_engine.ground_truth import LabelSet, parse_label_lines, record_labels  # noqa: E402
from drift_engine.payload_decoding import Prediction  # noqa: E402
from drift_engine.s3_lines import iter_lines, list_keys  # noqa: E402
from drift_engine.window import Window, parse_time  # noqa: E402

__all__ = [
    "CaptureBatch",
    "CaptureStats",
    "CapturedRow",
    "LabelSet",
    "Prediction",
    "Window",
    "iter_capture_records",
    "iter_lines",
    "list_keys",
    "parse_label_lines",
    "parse_time",
    "record_labels",
    "row_version",
    "rows_to_matrix",
]

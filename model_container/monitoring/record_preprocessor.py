"""Model Monitor record preprocessor: one captured request (JSON or CSV, any batch size) into feature rows.

SageMaker's analyzer loads this file on its own and calls `preprocess_handler` per captured record, so it
imports nothing outside the standard library. Rows come back keyed `_c0.._cN`, the column names the analyzer
gives the header-less baseline.csv of the model build; dict rows are put in schema order with FEATURE_NAMES,
which `render(feature_names)` appends when the baseline script uploads the file.

With RECORD_MODE=model_quality (set by the model-quality job definition) the handler returns instead the
prediction of a single-row request, in the attributes the job's problem type reads (its EndpointInput
InferenceAttribute, and ProbabilityAttribute for a binary classifier): ground truth is keyed by the record's event
id, so a multi-row request cannot be matched with labels row by row and is skipped. The response says the task
(README "Serving contract"):
    binary_classification      {"label", "probability"}  BinaryClassification (label, probability of the positive)
    multiclass_classification  {"label"}                 MulticlassClassification (the predicted class index)
    regression                 {"value"}                 Regression (the predicted value)
A binary card's positive class may be 0 (`positive_label`), while Model Monitor's binary metrics have class 1 as
the positive class (EndpointInput has no field naming it: ProbabilityThresholdAttribute is "The threshold for the
class probability to be evaluated as a positive result", and the metrics page's confusion matrix is keyed "0"/"1" with
precision and recall of "1", https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_EndpointInput.html). The
job definition sets POSITIVE_LABEL from the card, and the probability handed over is always P(label = 1):
`probability` when the card's positive class is 1, `1 - probability` when it is 0. Then accuracy and AUC are those of
the card's model; precision and recall stay class 1's, so no alarm reads them for such a card
(ml_constructs/model_quality_monitor.py).
Model Monitor computes a problem type's metrics from these ("Monitor model quality" and "Model quality metrics",
https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-model-quality.html and
https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-model-quality-metrics.html).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
from typing import Any

FEATURE_NAMES: list[str] = []
# The API gives the pipeline's own test traffic this inference id prefix (ml_constructs/prediction_api.py), which
# SageMaker captures in the record's event metadata; left out here as the built-in drift job leaves it out, so the
# pipeline's load tests cannot raise the violations that start a retraining run (aws-samples'
# amazon-sagemaker-data-quality-monitor-custom-preprocessing filters records the same way: return []).
TEST_INFERENCE_ID_PREFIX = "pipeline-test-"


def inference_id_of(metadata: Any) -> str:
    """The record's inference id, whether the analyzer hands the metadata over as an object or a mapping."""
    for name in ("inference_id", "inferenceId"):
        value = metadata.get(name) if isinstance(metadata, dict) else getattr(metadata, name, None)
        if value:
            return str(value)
    return ""


def rows_of(data: str, content_type: str) -> list[list[float]]:
    """The feature rows of one request body as numbers; [] for a body the server would have refused."""
    try:
        return [[_number(value) for value in row] for row in _raw_rows(data, content_type)]
    except (TypeError, ValueError):
        return []


def _number(value: Any) -> float:
    if isinstance(value, bool):  # a JSON true is not the number 1 to the server either
        raise TypeError("boolean feature value")
    return float(value)


def _raw_rows(data: str, content_type: str) -> list[list[Any]]:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "text/csv":
        return [row for row in csv.reader(io.StringIO(data)) if row]
    if media != "application/json":
        return []
    try:
        instances = json.loads(data).get("instances")
    except (ValueError, AttributeError):
        return []
    if not isinstance(instances, list):
        return []
    rows = []
    for row in instances:
        if isinstance(row, dict):
            if not FEATURE_NAMES or set(row) != set(FEATURE_NAMES):
                return []
            rows.append([row[name] for name in FEATURE_NAMES])
        elif isinstance(row, list):
            rows.append(row)
        else:
            return []
    return rows


def prediction_of(data: str) -> dict[str, Any] | None:
    """The one prediction of a single-row response, as the analyzer's attributes name it; else None."""
    try:
        predictions = json.loads(data).get("predictions")
        [prediction] = predictions
        if "value" in prediction:
            return _value(prediction["value"])
        label = prediction["label"]
        if not isinstance(label, int) or isinstance(label, bool) or label < 0:
            return None
        if "probabilities" in prediction:  # multiclass: the predicted class index
            return {"label": label} if isinstance(prediction["probabilities"], dict) else None
        probability = prediction["probability"]
    except (ValueError, AttributeError, TypeError, KeyError):
        return None
    if label not in (0, 1) or not _is_number(probability):
        return None
    if os.environ.get("POSITIVE_LABEL", "1") == "0":  # the response's probability is P(label = 0)
        return {"label": label, "probability": round(1.0 - float(probability), 6)}
    return {"label": label, "probability": float(probability)}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _value(value: Any) -> dict[str, Any] | None:
    return {"value": float(value)} if _is_number(value) else None


def _decoded(capture: Any) -> str:
    data = capture.data
    try:
        if str(capture.encoding).upper() == "BASE64":
            data = base64.b64decode(data).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""
    return str(data)


def preprocess_handler(inference_record: Any, logger: Any = None) -> Any:
    if inference_id_of(getattr(inference_record, "event_metadata", None)).startswith(TEST_INFERENCE_ID_PREFIX):
        return []
    if os.environ.get("RECORD_MODE") == "model_quality":
        prediction = prediction_of(_decoded(inference_record.endpoint_output))
        if prediction is None and logger is not None:
            logger.warning("captured record %s is not a single-row prediction", inference_record.event_metadata)
        return prediction or []
    endpoint_input = inference_record.endpoint_input
    rows = rows_of(_decoded(endpoint_input), str(endpoint_input.observed_content_type))
    if not rows and logger is not None:
        logger.warning("captured record %s has no readable feature rows", inference_record.event_metadata)
    return [{f"_c{index}": value for index, value in enumerate(row)} for row in rows]


def render(feature_names: list[str]) -> str:
    """This file's source with the feature order of the model version being monitored."""
    with open(__file__, encoding="utf-8") as source:
        return source.read() + f"\nFEATURE_NAMES = {json.dumps(feature_names)}\n"

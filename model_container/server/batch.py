"""SageMaker Batch Transform on the same server: GET /execution-parameters and multi-record bodies.

SageMaker starts the image for a transform job exactly as for an endpoint (`docker run IMAGE serve`) and sets
SAGEMAKER_BATCH=true; SAGEMAKER_MAX_PAYLOAD_IN_MB, SAGEMAKER_BATCH_STRATEGY and SAGEMAKER_MAX_CONCURRENT_TRANSFORMS
come only when the job sets them (SageMaker Developer Guide, "Use Your Own Inference Code with Batch Transform",
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-batch-code.html). In that mode the worker serves
`BatchInferenceApp`; without it nothing changes. `BatchInferenceApp` answers /ping and real-time JSON requests as
`InferenceApp` does, byte for byte, and adds:

GET /execution-parameters -> 200 {"MaxConcurrentTransforms": N, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": M}
    the tuning SageMaker uses where the CreateTransformJob request leaves a value unset ("How Containers Serve
    Requests": request values first, then this answer, then SageMaker's defaults). See `execution_parameters`.
POST /invocations with a body of line-delimited records, as SplitType=Line + BatchStrategy=MultiRecord sends them:
    text/csv               one header-less row of the card's features per line (the real-time CSV rules);
    application/jsonlines  one instance per line: an array of the features' values or an object of named features.
    The answer has one line per input line, in order, each ending with a newline, so AssembleWith=Line joins
    mini-batches into one output file whose line i is the prediction of input line i; its format follows Accept
    (text/csv: binary `label,probability,model_version`, multiclass `label,<p per class in label order>,
    model_version`, regression `value,model_version`, numbers with 6 decimals; application/jsonlines: the
    real-time prediction objects; application/json: the real-time `{"predictions": [...]}`), and without a
    specific Accept the format of the input. This is how AWS's own XGBoost container answers in batch mode (one
    prediction per line, newline-terminated). The row cap of real-time requests does not apply: MaxPayloadInMB
    bounds the body.
Errors: a record that fails validation fails its whole request with 400; the error names the line (1-based, within
    this request's mini-batch) in its message and in "line" (the real-time "row", 0-based, stays). SageMaker then
    writes no output for that input file and marks the job Failed ("Use Batch Transform", Batch Transform Errors:
    "If an input file contains a bad record, the transform job doesn't create an output file for that input file"),
    rather than a placeholder line silently standing in for a prediction.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from model_container.server.app import JSON, InferenceApp, Response, media_type
from model_container.server.config import ServerConfig
from model_container.server.logs import LogWriter
from model_container.server.model import LoadedModel, Scores
from model_container.server.validation import UTF8_BOM, FeatureValidator, RequestError, bad

CSV = b"text/csv"
JSONLINES = b"application/jsonlines"
OUTPUTS = (JSON, JSONLINES, CSV)  # what a batch answer can be, in this order of preference on ties
EXECUTION_PARAMETERS_PATH = b"/execution-parameters"
MB = 1024 * 1024
# The mini-batch size this container asks for (at most its body limit). Measured with the local batch driver
# (tests/model_container/batch_driver.py) on a 2-CPU machine, 2 workers, CSV, 2 requests in flight: a 100 MB file
# ran at 133k rows/s in 1 MB mini-batches, 136k in 2 MB and 116k in 6 MB; a 10 MB file at 123k in 1 MB and 64k in
# 6 MB. A request costs ~70 ms of CPU per MB (CSV parsing dominates; the model takes ~8 ms for 30,000 rows), so
# big mini-batches leave workers idle while the last one of a file runs, and hold ~8x their size in memory.
RECOMMENDED_PAYLOAD_MB = 1


def execution_parameters(config: ServerConfig) -> dict[str, Any]:
    """What this container asks SageMaker for where the transform job sets nothing.

    MULTI_RECORD: one model call per mini-batch instead of one per record (a single-row request spends ~40 µs in
    HTTP and validation around a ~5 µs inference). MaxConcurrentTransforms: one request per worker process (one
    per CPU by default). A worker runs one model call at a time, and with every CPU busy more requests only queue:
    2 workers on 2 CPUs took 126k rows/s with 2 in flight, 124k with 3, 115k with 4 and 109k with 6, while the
    slowest request went from 0.45 s to 2 s. MaxPayloadInMB: `RECOMMENDED_PAYLOAD_MB`, or the body limit
    (SAGEMAKER_MAX_PAYLOAD_IN_MB, 6 by default as for real-time invocations) when that is smaller - a job that
    sets MaxPayloadInMB itself gets that limit set on the container by SageMaker.
    """
    return {
        "MaxConcurrentTransforms": config.workers,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": min(RECOMMENDED_PAYLOAD_MB, config.max_body_bytes // MB),
    }


class LineError(RequestError):
    """A RequestError about one line of a multi-record body; its JSON body also carries "line" (1-based)."""

    def __init__(self, error: RequestError, line: int, message: str) -> None:
        super().__init__(error.status, error.code, message, error.row, error.field)
        self.line = line

    def body(self, request_id: str) -> dict[str, Any]:
        document = super().body(request_id)
        document["error"]["line"] = self.line
        return document


def by_line(error: RequestError, lines: list[bytes] | None = None) -> RequestError:
    """The same error, worded by line: the validator's "row 3 ..." becomes "line 4 ..." (lines count from 1)."""
    if error.row is None:
        return error
    if lines is not None and error.row < len(lines) and not lines[error.row].strip():
        return empty_line(error.row)
    line = error.row + 1
    prefix = f"row {error.row}"
    if error.message.startswith(prefix):
        message = f"line {line}{error.message[len(prefix) :]}"
    else:
        message = f"line {line}: {error.message}"
    return LineError(error, line, message)


def empty_line(index: int) -> LineError:
    return LineError(bad("empty_line", "", row=index), index + 1, f"line {index + 1} is empty (one record per line)")


def csv_records(validator: FeatureValidator, body: bytes) -> np.ndarray:
    """Rows of a text/csv mini-batch, by the real-time CSV rules, with errors worded by line."""
    try:
        return validator.from_csv(body)
    except RequestError as error:
        raise by_line(error, body.removeprefix(UTF8_BOM).splitlines()) from None


def jsonlines_records(validator: FeatureValidator, body: bytes) -> np.ndarray:
    """Rows of an application/jsonlines mini-batch: each line one instance, as in a real-time "instances" array."""
    lines = body.removeprefix(UTF8_BOM).splitlines()  # JSON text cannot hold a raw line break: splitting is safe
    instances = []
    for index, line in enumerate(lines):
        try:
            instances.append(_instance(index, line))
        except LineError:
            if instances:  # an invalid record on an earlier line is the first error
                _validated(validator, instances)
            raise
    return _validated(validator, instances)


def _instance(index: int, line: bytes) -> Any:
    if not line.strip():
        raise empty_line(index)
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        message = f"line {index + 1} is not valid JSON ({exc.msg} at column {exc.colno})"
        raise LineError(bad("malformed_json", "", row=index), index + 1, message) from None


def _validated(validator: FeatureValidator, instances: list[Any]) -> np.ndarray:
    try:
        return validator.from_document({"instances": instances})
    except RequestError as error:
        raise by_line(error) from None


def negotiate(accept: bytes, preferred: bytes) -> bytes | None:
    """The format to answer in: the best-quality entry of Accept that names one of `OUTPUTS` (`*/*` and an empty
    Accept name `preferred`, the request's own format), or None when Accept excludes all of them."""
    if not accept.strip():
        return preferred
    best, best_quality = None, 0.0
    for part in accept.split(b","):
        media, _, params = part.partition(b";")
        media = media.strip().lower()
        if media == b"*/*":
            candidate: bytes | None = preferred
        elif media.endswith(b"/*"):
            family = media[:-1]  # b"text/" of b"text/*"
            matching = [o for o in OUTPUTS if o.startswith(family)]
            candidate = preferred if preferred in matching else next(iter(matching), None)
        else:
            candidate = next((o for o in OUTPUTS if o == media), None)
        quality = _quality(params)
        if candidate is not None and quality > best_quality:
            best, best_quality = candidate, quality
    return best


def _quality(params: bytes) -> float:
    for param in params.split(b";"):
        key, _, value = param.partition(b"=")
        if key.strip().lower() == b"q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def render(output: bytes, model: LoadedModel, scores: Scores, labels: list[int]) -> bytes:
    """The body of a 200 answer in format `output`: one prediction per row, in row order."""
    if output is CSV:
        return model.csv(scores, labels)
    predictions = model.objects(scores, labels)
    if output is JSONLINES:
        return b"".join([orjson.dumps(prediction, option=orjson.OPT_APPEND_NEWLINE) for prediction in predictions])
    return orjson.dumps({"predictions": predictions})


Parser = Callable[[FeatureValidator, bytes], np.ndarray]
# media type -> (parser, the format answered by default)
PARSERS: dict[str, tuple[Parser, bytes]] = {
    "application/json": (lambda validator, body: validator.from_json(body), JSON),
    "text/csv": (csv_records, CSV),
    "application/jsonlines": (jsonlines_records, JSONLINES),
}


class BatchInferenceApp(InferenceApp):
    """InferenceApp for Batch Transform: adds /execution-parameters, multi-record CSV and JSON Lines bodies and
    answers in the format Accept asks for (see the module docstring)."""

    def __init__(self, logs: LogWriter, parameters: dict[str, Any]) -> None:
        super().__init__(logs)
        self.parameters_body = orjson.dumps(parameters)
        self._output = JSON  # set by validate() for the request prepare() is handling
        self._outputs: dict[str, bytes] = {}  # request id -> answer format, until complete() answers it
        self._unbounded: tuple[LoadedModel, FeatureValidator] | None = None

    def prepare(
        self, method: bytes, path: bytes, content_type: bytes, accept: bytes, body: bytes, request_id: str
    ) -> Response | np.ndarray:
        if path.split(b"?", 1)[0] == EXECUTION_PARAMETERS_PATH:
            if method != b"GET":
                error = RequestError(405, "method_not_allowed", "use GET /execution-parameters")
                return Response(405, orjson.dumps(error.body(request_id)), error_code=error.code, allow=b"GET")
            return Response(200, self.parameters_body)
        outcome = super().prepare(method, path, content_type, accept, body, request_id)
        if type(outcome) is not Response:
            self._outputs[request_id] = self._output
        return outcome

    def validate(self, content_type: bytes, accept: bytes, body: bytes) -> np.ndarray:
        media = media_type(content_type)
        if media not in PARSERS:
            raise RequestError(
                415,
                "unsupported_media_type",
                f"content type {media or '(none)'!r} not supported; use application/json, text/csv or "
                "application/jsonlines",
            )
        parse, preferred = PARSERS[media]
        output = negotiate(accept, preferred)
        if output is None:
            raise RequestError(
                406, "not_acceptable", "this server produces application/json, application/jsonlines or text/csv"
            )
        model = self.model
        if model is None:
            raise RequestError(503, "model_not_ready", self.load_error or "model is loading")
        features = parse(self._validator(model), body)
        self._output = output
        return features

    def _validator(self, model: LoadedModel) -> FeatureValidator:
        """The model's validator without the real-time row cap: MaxPayloadInMB bounds a mini-batch instead."""
        if self._unbounded is None or self._unbounded[0] is not model:
            validator = copy.copy(model.validator)
            validator.max_rows = sys.maxsize
            self._unbounded = (model, validator)
        return self._unbounded[1]

    def complete(self, batch: list[np.ndarray], request_ids: list[str]) -> list[Response]:
        outputs = [self._outputs.pop(request_id, JSON) for request_id in request_ids]
        return self._answer(batch, request_ids, outputs)

    def _answer(self, batch: list[np.ndarray], request_ids: list[str], outputs: list[bytes]) -> list[Response]:
        model = self.model
        assert model is not None  # prepare() answered 503 otherwise, and a loaded model stays loaded
        try:
            scores, labels = model.predict(batch[0] if len(batch) == 1 else np.concatenate(batch))
        except Exception:
            if len(batch) > 1:  # find the request the model fails on; the others still get answers
                return [
                    self._answer([rows], [request_id], [output])[0]
                    for rows, request_id, output in zip(batch, request_ids, outputs, strict=True)
                ]
            return [self.internal_error(request_ids[0])]
        responses, start = [], 0
        for rows, output in zip(batch, outputs, strict=True):
            end = start + len(rows)
            request_scores, request_labels = scores[start:end], labels[start:end]
            start = end
            responses.append(
                Response(
                    200,
                    render(output, model, request_scores, request_labels),
                    content_type=output,
                    rows=len(request_scores),
                    tally=model.tally(request_scores, request_labels),
                )
            )
        return responses

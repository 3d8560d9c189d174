"""Request handling of the SageMaker hosting contract, independent of the HTTP transport.

POST /invocations (application/json or text/csv) -> 200 {"predictions": [...]}, one flat object per input row,
in input order, as the model card's task says (server/model.py):
    binary_classification      {"label": 1, "probability": 0.973214, "model_version": "1.2.0"}
                               probability is P(label = the card's positive_label), rounded to 6 decimals
    multiclass_classification  {"label": 2, "probabilities": {"<class name>": 0.012, ...}, "model_version": ...}
    regression                 {"value": 151.25, "model_version": ...}
Errors: {"error": {"code", "message", "request_id", "row"?, "field"?}}.
GET /ping -> 200 with an empty body once the model is loaded and warmed up, 503 before.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson

from model_container.server.logs import LogWriter
from model_container.server.model import LoadedModel, Tally
from model_container.server.validation import RequestError

JSON = b"application/json"
PARSERS = {"application/json": "from_json", "text/csv": "from_csv"}
ACCEPTABLE = (b"*/*", b"application/*", b"application/json")
HEADER_CACHE_LIMIT = 1024  # header values repeat: cache their parse, but bounded against junk


@dataclass(slots=True)
class Response:
    """What the transport writes back, plus the figures the request log and metrics need."""

    status: int
    body: bytes = b""
    content_type: bytes = JSON
    rows: int = 0
    tally: Tally | None = None  # what the predictions add to the metrics (None: no predictions)
    error_code: str | None = None
    allow: bytes | None = None


def media_type(raw: bytes) -> str:
    """'Text/CSV; charset=utf-8' -> 'text/csv'."""
    return raw.split(b";", 1)[0].strip().lower().decode("latin-1")


def accepts_json(raw: bytes) -> bool:
    if not raw.strip():
        return True
    for part in raw.split(b","):
        media, _, params = part.partition(b";")
        if media.strip().lower() not in ACCEPTABLE:
            continue
        quality = 1.0
        for param in params.split(b";"):
            key, _, value = param.partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            return True
    return False


NOT_ALL_WORKERS_READY = "not every worker has the model loaded yet (a failure is logged as model_load_failed)"


class InferenceApp:
    """Routes /ping and /invocations to the loaded model and renders JSON responses."""

    def __init__(self, logs: LogWriter) -> None:
        self.logs = logs
        self.model: LoadedModel | None = None
        self.load_error: str | None = None
        # Whether every worker of the server has loaded the model (the worker sets it from shared memory): /ping
        # says ready only then, so no request is routed while a sibling would still answer 503.
        self.siblings_ready: Callable[[], bool] = lambda: True
        self._media_types: dict[bytes, str] = {}
        self._accepts: dict[bytes, bool] = {}

    def handle(
        self, method: bytes, path: bytes, content_type: bytes, accept: bytes, body: bytes, request_id: str
    ) -> Response:
        """One request, start to end (the transport uses prepare and complete to batch model calls)."""
        prepared = self.prepare(method, path, content_type, accept, body, request_id)
        if isinstance(prepared, Response):
            return prepared
        return self.complete([prepared], [request_id])[0]

    def prepare(
        self, method: bytes, path: bytes, content_type: bytes, accept: bytes, body: bytes, request_id: str
    ) -> Response | np.ndarray:
        """Route and validate: the final response, or the float32 rows of a valid /invocations request."""
        path = path.split(b"?", 1)[0]
        try:
            if path == b"/invocations":
                if method != b"POST":
                    raise RequestError(405, "method_not_allowed", "use POST /invocations")
                return self.validate(content_type, accept, body)
            if path == b"/ping":
                if method != b"GET" and method != b"HEAD":  # HEAD: the GET's status and headers, no content
                    raise RequestError(405, "method_not_allowed", "use GET /ping")
                return self.ping()
            raise RequestError(404, "not_found", f"no route for {path.decode('latin-1')!r}")
        except RequestError as error:
            return self.error(error, request_id)
        except Exception:
            return self.internal_error(request_id)

    def complete(self, batch: list[np.ndarray], request_ids: list[str]) -> list[Response]:
        """Predict the rows of several validated requests in one model call; one response per request.

        A row's prediction does not depend on the rows it is run with (LoadedModel.predict), so batching
        requests together changes no response."""
        model = self.model
        assert model is not None  # prepare() answered 503 otherwise, and a loaded model stays loaded
        try:
            scores, labels = model.predict(batch[0] if len(batch) == 1 else np.concatenate(batch))
        except Exception:
            if len(batch) > 1:  # find the request the model fails on; the others still get answers
                return [self.complete([rows], [rid])[0] for rows, rid in zip(batch, request_ids, strict=True)]
            return [self.internal_error(request_ids[0])]
        responses = []
        start = 0
        for rows in batch:
            end = start + len(rows)
            request_scores, request_labels = scores[start:end], labels[start:end]
            start = end
            responses.append(
                Response(
                    200,
                    model.json_body(request_scores, request_labels),
                    rows=len(request_scores),
                    tally=model.tally(request_scores, request_labels),
                )
            )
        return responses

    def internal_error(self, request_id: str) -> Response:
        self.logs.write_now(
            {
                "level": "error",
                "event": "request_failed",
                "request_id": request_id,
                "traceback": traceback.format_exc(),
            }
        )
        return self.error(
            RequestError(
                500, "internal_error", "internal error (model failure); quote the request_id when reporting it"
            ),
            request_id,
        )

    def ping(self) -> Response:
        if self.model is None:
            raise RequestError(503, "model_not_ready", self.load_error or "model is loading")
        if not self.siblings_ready():
            raise RequestError(503, "model_not_ready", NOT_ALL_WORKERS_READY)
        return Response(200, content_type=b"")

    def validate(self, content_type: bytes, accept: bytes, body: bytes) -> np.ndarray:
        media = self._media_types.get(content_type)
        if media is None:
            media = media_type(content_type)
            if len(self._media_types) < HEADER_CACHE_LIMIT:
                self._media_types[content_type] = media
        parser = PARSERS.get(media)
        if parser is None:
            raise RequestError(
                415,
                "unsupported_media_type",
                f"content type {media or '(none)'!r} not supported; use application/json or text/csv",
            )
        accepted = self._accepts.get(accept)
        if accepted is None:
            accepted = accepts_json(accept)
            if len(self._accepts) < HEADER_CACHE_LIMIT:
                self._accepts[accept] = accepted
        if not accepted:
            raise RequestError(406, "not_acceptable", "this server only produces application/json")
        model = self.model
        if model is None:
            raise RequestError(503, "model_not_ready", self.load_error or "model is loading")
        features: np.ndarray = getattr(model.validator, parser)(body)
        return features

    @staticmethod
    def error(error: RequestError, request_id: str) -> Response:
        allow = None
        if error.status == 405:
            allow = b"GET, HEAD" if "ping" in error.message else b"POST"
        return Response(error.status, orjson.dumps(error.body(request_id)), error_code=error.code, allow=allow)

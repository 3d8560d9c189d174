"""The ONNX model of a model package: integrity check, session set-up, warm-up, prediction and rendering per task.

The model card (metadata.json, model_container/card.py) says the task, and the task says what the graph returns
and what a prediction is (README "Serving contract"):

    binary_classification      outputs label [N], probabilities [N, 2]  -> {"label", "probability", "model_version"}
    multiclass_classification  outputs label [N], probabilities [N, k]  -> {"label", "probabilities", "model_version"}
    regression                 output value [N] or [N, 1]               -> {"value", "model_version"}

Probabilities and values are rounded to 6 decimals. `predict` returns (scores, labels): per row the binary
P(label = positive), the multiclass probability row in label order, or the regression value; and the predicted
class index per row (empty for regression).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort
import orjson

from model_container.card import BINARY, MULTICLASS, OUTPUT_ROLES, REGRESSION, CardError, ModelCard
from model_container.server.validation import FeatureValidator

SMALL_BATCH = 8
# Rows per ONNX Runtime call. Past some batch size ONNX Runtime computes with other kernels and a row's last float32
# bit moves (measured on the wine example, ONNX Runtime 1.32: every batch of 2..4,096 rows gives each row exactly its
# result alone, batches of 6,000 and 13,000 moved 38-41 % of rows): larger batches run in chunks of this many rows,
# so a prediction never depends on the rows sent with it (tests/model_container/test_batch_independence.py).
RUN_CHUNK_ROWS = 4096
WARM_UP_ROWS = (1, 100)
Scores = list[Any]  # float per row (binary, regression) or a list of floats per row (multiclass)


class ModelLoadError(Exception):
    """The model directory is missing, incomplete or does not match its model card."""


@dataclass(slots=True)
class Tally:
    """What a response adds to the prediction metrics (server/metrics.py)."""

    score_sum: float = 0.0  # binary: sum of P(positive); regression: sum of predicted values
    positives: int = 0  # binary: rows predicted positive
    class_counts: list[int] | None = None  # multiclass: rows predicted per class, in label order


def rounded(values: np.ndarray) -> list[Any]:
    """float32 -> float64, then to 6 decimals: 0.97 prints as 0.97, not 0.9700000286102295."""
    return (np.rint(values.astype(np.float64) * 1e6) / 1e6).tolist()


@dataclass
class LoadedModel:
    """An ONNX Runtime session with the card and feature validator of its package; one subclass per task."""

    name: str
    version: str
    card: ModelCard
    validator: FeatureValidator
    session: ort.InferenceSession
    input_name: str
    output_names: list[str]

    task: ClassVar[str] = ""

    def __post_init__(self) -> None:
        # Read per request: looked up once here, not through the card's properties on the hot path.
        self.label_names = self.card.label_names
        self.positive = int(self.card.positive_label or 0)

    @classmethod
    def load(cls, model_dir: Path) -> LoadedModel:
        card_path, onnx_path = model_dir / "metadata.json", model_dir / "model.onnx"
        for path in (card_path, onnx_path):
            if not path.is_file():
                raise ModelLoadError(f"{path} not found (is the model artifact unpacked into {model_dir}?)")
        try:
            card = ModelCard.from_dict(orjson.loads(card_path.read_bytes()), str(card_path))
        except orjson.JSONDecodeError as exc:
            raise ModelLoadError(f"{card_path} is not valid JSON: {exc}") from None
        except CardError as exc:
            raise ModelLoadError(f"{card_path}: {exc}") from None
        onnx_bytes = onnx_path.read_bytes()
        digest = hashlib.sha256(onnx_bytes).hexdigest()
        if digest != card.content_sha256:
            raise ModelLoadError(f"{onnx_path} sha256 {digest} does not match metadata.json content_sha256")
        session = _session(onnx_bytes)
        model_class = TASK_MODELS[card.task]
        model = model_class(
            card.name,
            card.version,
            card,
            FeatureValidator(card.feature_schema),
            session,
            session.get_inputs()[0].name,
            card.output_names,
        )
        model.check_graph()
        model.warm_up()
        return model

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.card.raw)

    # ---- load-time checks ---------------------------------------------------------------------------------
    def check_graph(self) -> None:
        """The graph's input and outputs are the ones the card's task and feature schema promise."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"model.onnx has {len(inputs)} inputs; the platform feeds one float tensor [N, width]")
        shape = inputs[0].shape
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != self.card.width):
            raise ModelLoadError(
                f"model.onnx input {self.input_name!r} has shape {shape}; the card's feature_schema lists "
                f"{self.card.width} features, so it must be [N, {self.card.width}]"
            )
        roles = OUTPUT_ROLES[self.task]
        graph_names = [output.name for output in outputs]
        if len(outputs) != len(roles) or len(self.output_names) != len(roles):
            raise ModelLoadError(
                f"model.onnx has {len(outputs)} output(s) {graph_names} and the card's onnx.outputs names "
                f"{self.output_names}; a {self.task} model (card 'task') has {len(roles)}: {', '.join(roles)}"
            )
        missing = [name for name in self.output_names if name not in graph_names]
        if missing:
            raise ModelLoadError(f"model.onnx has no output {missing[0]!r} (card onnx.outputs); it has {graph_names}")

    def warm_up(self) -> None:
        """Run the graph once on single and batched rows so the first request pays no set-up cost; check shapes."""
        features = self.card.feature_schema["features"]
        row = [(f["training_min"] + f["training_max"]) / 2 for f in features]
        for rows in WARM_UP_ROWS:
            matrix = np.array([row] * rows, dtype=np.float32)
            try:
                raw = self._run(self.output_names, {self.input_name: matrix}, None)
            except Exception as exc:  # onnxruntime's own errors name the node; say which part failed
                raise ModelLoadError(f"warm-up inference on {rows} row(s) failed: {exc}") from None
            self.check_outputs(raw, rows)
            scores, _ = self.predict(matrix)
            if len(scores) != rows:
                raise ModelLoadError("warm-up inference returned an unexpected shape")

    def check_outputs(self, raw: list[np.ndarray], rows: int) -> None:
        raise NotImplementedError

    def _output_error(self, role: str, array: np.ndarray, rows: int, expected: str) -> ModelLoadError:
        name = self.output_names[OUTPUT_ROLES[self.task].index(role)]
        return ModelLoadError(
            f"model.onnx output {name!r} ({role}) is {array.dtype} {list(array.shape)} on {rows} row(s); "
            f"a {self.task} model with this card returns {expected}"
        )

    # ---- prediction -----------------------------------------------------------------------------------------
    def predict(self, features: np.ndarray) -> tuple[Scores, list[int]]:
        raise NotImplementedError

    def objects(self, scores: Scores, labels: list[int]) -> list[dict[str, Any]]:
        """The prediction objects of a response, one per row."""
        raise NotImplementedError

    def csv(self, scores: Scores, labels: list[int]) -> bytes:
        """Batch Transform's text/csv answer: one line per row, newline-terminated."""
        raise NotImplementedError

    def tally(self, scores: Scores, labels: list[int]) -> Tally:
        raise NotImplementedError

    def json_body(self, scores: Scores, labels: list[int]) -> bytes:
        return orjson.dumps({"predictions": self.objects(scores, labels)})

    def _pair_run(self, features: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs for `features`.

        A row's result does not depend on the other rows it is run with, so the transport may batch
        several requests into one call: ONNX Runtime computes a lone row with another kernel than two
        or more rows, which can move the last float32 bit, so a single row is run as a pair (and the
        caller keeps the first `len(features)` rows)."""
        if len(features) == 1:
            features = np.concatenate((features, features))
        if len(features) > RUN_CHUNK_ROWS:
            chunks = [self._pair_run(features[i : i + RUN_CHUNK_ROWS]) for i in range(0, len(features), RUN_CHUNK_ROWS)]
            return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]
        # The C-level run skips the Python wrapper's per-call input checks (~5 µs of a ~30 µs request);
        # our feed is always one float32 matrix of the declared width. warm_up() exercises it at load.
        outputs: list[np.ndarray] = self._run(self.output_names, {self.input_name: features}, None)
        return outputs

    @property
    def _run(self) -> Any:
        return getattr(self.session, "_sess", self.session).run


class BinaryModel(LoadedModel):
    """A binary classifier: label and P(label = the card's positive_label)."""

    task = BINARY

    def check_outputs(self, raw: list[np.ndarray], rows: int) -> None:
        _check_classifier(self, raw, rows)

    def predict(self, features: np.ndarray) -> tuple[list[float], list[int]]:
        """P(label = positive) per row (6 decimals) and the predicted labels."""
        rows, positive = len(features), self.positive
        # The hot path of the default model: _pair_run's body inlined (a method call is ~5% of a 1-row request).
        if rows == 1:
            features = np.concatenate((features, features))
        elif rows > RUN_CHUNK_ROWS:
            labels, probabilities = self._pair_run(features)
            return rounded(probabilities[:, positive]), labels.tolist()
        labels, probabilities = self._run(self.output_names, {self.input_name: features}, None)
        if rows <= SMALL_BATCH:  # numpy's per-call overhead dominates on a few rows
            # tolist() widens float32 to Python floats exactly, as astype(np.float64) does.
            return [round(row[positive], 6) for row in probabilities.tolist()[:rows]], labels.tolist()[:rows]
        return rounded(probabilities[:, positive]), labels.tolist()

    def objects(self, scores: Scores, labels: list[int]) -> list[dict[str, Any]]:
        version = self.version
        return [
            {"label": label, "probability": probability, "model_version": version}
            for label, probability in zip(labels, scores, strict=True)
        ]

    def json_body(self, scores: Scores, labels: list[int]) -> bytes:
        version = self.version  # objects() inlined, as in predict()
        predictions = [
            {"label": label, "probability": probability, "model_version": version}
            for label, probability in zip(labels, scores, strict=True)
        ]
        return orjson.dumps({"predictions": predictions})

    def csv(self, scores: Scores, labels: list[int]) -> bytes:
        # 6 decimals as in JSON (probabilities are rounded to 6 already), without JSON's exponent for tiny values.
        version = self.version
        return "".join(f"{label},{p:.6f},{version}\n" for label, p in zip(labels, scores, strict=True)).encode()

    def tally(self, scores: Scores, labels: list[int]) -> Tally:
        positives = sum(labels)
        return Tally(sum(scores), positives if self.positive == 1 else len(labels) - positives)


class MulticlassModel(LoadedModel):
    """A classifier over three or more classes: label index and a probability per class name."""

    task = MULTICLASS

    def check_outputs(self, raw: list[np.ndarray], rows: int) -> None:
        _check_classifier(self, raw, rows)

    def predict(self, features: np.ndarray) -> tuple[list[list[float]], list[int]]:
        """The probability row per row (label order, 6 decimals) and the predicted labels."""
        rows = len(features)
        labels, probabilities = self._pair_run(features)
        if rows <= SMALL_BATCH:
            return [[round(p, 6) for p in row] for row in probabilities.tolist()[:rows]], labels.tolist()[:rows]
        return rounded(probabilities), labels.tolist()

    def objects(self, scores: Scores, labels: list[int]) -> list[dict[str, Any]]:
        version, names = self.version, self.label_names
        return [
            {"label": label, "probabilities": dict(zip(names, row, strict=True)), "model_version": version}
            for label, row in zip(labels, scores, strict=True)
        ]

    def csv(self, scores: Scores, labels: list[int]) -> bytes:
        version = self.version
        return "".join(
            f"{label},{','.join(f'{p:.6f}' for p in row)},{version}\n"
            for label, row in zip(labels, scores, strict=True)
        ).encode()

    def tally(self, scores: Scores, labels: list[int]) -> Tally:
        counts = [0] * self.card.classes
        for label in labels:
            counts[label] += 1
        return Tally(class_counts=counts)


class RegressionModel(LoadedModel):
    """A regressor: one value per row, in the card's target unit."""

    task = REGRESSION

    def check_outputs(self, raw: list[np.ndarray], rows: int) -> None:
        (value,) = raw
        if value.dtype.kind != "f" or value.shape not in ((rows,), (rows, 1)):
            raise self._output_error("value", value, rows, f"a float [N] or [N, 1] (N = {rows})")

    def predict(self, features: np.ndarray) -> tuple[list[float], list[int]]:
        rows = len(features)
        (values,) = self._pair_run(features)
        flat = values.reshape(-1)[:rows]
        if rows <= SMALL_BATCH:
            return [round(v, 6) for v in flat.tolist()], []
        return rounded(flat), []

    def objects(self, scores: Scores, labels: list[int]) -> list[dict[str, Any]]:
        version = self.version
        return [{"value": value, "model_version": version} for value in scores]

    def csv(self, scores: Scores, labels: list[int]) -> bytes:
        version = self.version
        return "".join(f"{value:.6f},{version}\n" for value in scores).encode()

    def tally(self, scores: Scores, labels: list[int]) -> Tally:
        return Tally(sum(scores))


TASK_MODELS: dict[str, type[LoadedModel]] = {
    BINARY: BinaryModel,
    MULTICLASS: MulticlassModel,
    REGRESSION: RegressionModel,
}


def _check_classifier(model: LoadedModel, raw: list[np.ndarray], rows: int) -> None:
    labels, probabilities = raw
    classes = model.card.classes
    if labels.dtype.kind not in "iu" or labels.shape != (rows,):
        raise model._output_error("label", labels, rows, f"integer class indices [N] (N = {rows})")
    if probabilities.dtype.kind != "f" or probabilities.shape != (rows, classes):
        raise model._output_error(
            "probabilities", probabilities, rows, f"float [N, {classes}]: one column per class the card's labels name"
        )
    if not ((labels >= 0) & (labels < classes)).all():
        raise ModelLoadError(
            f"model.onnx predicts label {int(labels.max())}; the card's labels name classes 0..{classes - 1}"
        )


def _session(onnx_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # One thread per worker: parallelism comes from worker processes, not from contended pools.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors are plain RuntimeErrors; the worker reports a load failure
        raise ModelLoadError(f"model.onnx is not a model ONNX Runtime can load: {exc}") from None

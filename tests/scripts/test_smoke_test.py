"""The smoke test against a local stand-in of the API on 127.0.0.1: one that keeps the contract of the model card's
task, and ones that do not (wrong status codes, wrong prediction count, predictions of the wrong shape, too slow)."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator

from model_container.card import BINARY, MULTICLASS, REGRESSION, ModelCard
from model_container.contract.generate import response_schema
from scripts.smoke_test import MODEL_CARD, main, prediction_problem, sample_rows
from tests.model_packages import example_package

KEY = "test-key"
Answer = Callable[[ModelCard], dict[str, Any]]


class StubApi(BaseHTTPRequestHandler):
    """Behaves like API Gateway + the model for POST /api/v1/predict; `flaws` switch misbehaviours on."""

    flaws: frozenset[str] = frozenset()
    card: ModelCard = ModelCard.load(MODEL_CARD)
    answer: Answer = staticmethod(lambda card: card.response_example())  # type: ignore[assignment]
    seen_rows: list[Any] = []  # noqa: RUF012 - each fixture's handler class gets a list of its own
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path != "/api/v1/predict":
            return self.reply(404, {"message": "Not Found"})
        if self.headers.get("x-api-key") != KEY and "no_auth" not in self.flaws:
            return self.reply(403, {"error": {"code": "forbidden", "message": "Forbidden", "request_id": "r"}})
        instances = json.loads(body).get("instances")
        if not isinstance(instances, list) and "accepts_anything" not in self.flaws:
            return self.reply(400, {"error": {"code": "invalid_body", "message": "bad", "request_id": "r"}})
        if "slow" in self.flaws:
            time.sleep(0.05)
        rows = len(instances) if isinstance(instances, list) else 1
        if isinstance(instances, list):
            self.seen_rows.extend(instances)
        if "drops_a_row" in self.flaws:
            rows = max(0, rows - 1)
        self.reply(200, {"predictions": [self.answer(self.card) for _ in range(rows)]})


@contextmanager
def serving(**attributes: Any) -> Iterator[tuple[str, type[StubApi]]]:
    handler = type("Handler", (StubApi,), {"seen_rows": [], **attributes})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api/v1/predict", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Iterator[str]:
    with serving(flaws=frozenset(getattr(request, "param", ()))) as (url, _):
        yield url


def smoke(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    code = main(["--url", url, "--api-key", KEY, *extra])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def test_well_behaved_api_passes_cases_and_load(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = smoke(capsys, api, "--rows", "3", "--requests", "60", "--concurrency", "4", "--p99-ms", "2000")
    assert code == 0, err
    assert [c["passed"] for c in report["cases"]] == [True] * 4
    assert report["load"]["completed"] == 60 and report["load"]["errors"] == {}
    assert report["load"]["p99_ms"] <= 2000


@pytest.mark.parametrize(
    ("api", "failing_case"),
    [
        (["no_auth"], "missing API key -> 403"),
        (["accepts_anything"], "invalid body -> 400 JSON error"),
        (["drops_a_row"], "single row"),
    ],
    indirect=["api"],
)
def test_contract_violations_fail_with_the_case_named(
    api: str, failing_case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, err = smoke(capsys, api, "--requests", "10")
    assert code == 1
    assert failing_case in [c["name"] for c in report["cases"] if not c["passed"]]
    assert f"FAILED case '{failing_case}'" in err
    assert "load" not in report  # no load test against a broken contract


@pytest.mark.parametrize("api", [["slow"]], indirect=True)
def test_slow_api_fails_the_p99_threshold(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = smoke(capsys, api, "--requests", "20", "--concurrency", "2", "--p99-ms", "20")
    assert code == 1 and report["load"]["p99_ms"] > 20
    assert "p99 latency" in err


@pytest.mark.parametrize("api", [["slow"]], indirect=True)
def test_load_test_stops_at_the_time_budget(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, report, err = smoke(capsys, api, "--requests", "100000", "--concurrency", "2", "--time-budget-s", "0.5")
    assert time.monotonic() - started < 10
    assert code == 1 and report["load"]["stopped_on_budget"] is True
    assert "within the time budget" in err


def test_wrong_path_fails_every_case(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, _ = smoke(capsys, api.replace("/api/v1/", "/api/v2/"))
    assert code == 1 and not any(c["passed"] for c in report["cases"])


@pytest.mark.parametrize("path", ["/v1/v1/predict", "/api/predict", "/api/v1/v1/predict"])
def test_a_url_without_exactly_one_version_is_a_usage_error(
    api: str, path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The API's URL is /<stage>/v<api.version>/predict (stage "api"): the old stage-named-v1 URL (…/v1/v1/predict)
    # or a URL without the version is refused before any request, naming the expected shape.
    with pytest.raises(SystemExit) as exited:
        smoke(capsys, api.replace("/api/v1/predict", path))
    assert exited.value.code == 2
    assert "/<stage>/v<major>/predict" in capsys.readouterr().err


def test_unreachable_api_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = smoke(capsys, "http://127.0.0.1:9/api/v1/predict", "--timeout-s", "2")
    assert code == 1 and "cannot reach" in err


# --- Per task: the card the build wrote says what a prediction is ------------------------------------------------
def test_each_tasks_api_passes_with_its_card_and_gets_rows_from_the_card(
    model_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = ModelCard.load(model_package)
    with serving(card=card) as (url, handler):
        code, report, err = smoke(capsys, url, "--card", str(model_package / "metadata.json"), "--requests", "5")
    assert code == 0, err
    assert report["model"] == {"name": card.name, "version": card.version, "task": card.task}
    sent = [row for row in handler.seen_rows if isinstance(row, list)]
    assert sent and all(len(row) == card.width for row in sent)
    for row in sent:  # inside each feature's training range
        for value, feature in zip(row, card.feature_schema["features"], strict=True):
            assert feature["training_min"] <= value <= feature["training_max"]


def other_tasks_answer(card: ModelCard) -> dict[str, Any]:
    """A well-formed prediction of another task than the card's."""
    others = {BINARY: "wine", MULTICLASS: "diabetes", REGRESSION: "breast_cancer"}
    return ModelCard.load(example_package(others[card.task])).response_example()


def test_an_api_answering_another_tasks_predictions_fails_the_cases(
    model_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = ModelCard.load(model_package)
    with serving(card=card, answer=staticmethod(other_tasks_answer)) as (url, _):
        code, report, err = smoke(capsys, url, "--card", str(model_package), "--rows", "4", "--requests", "5")
    assert code == 1 and "load" not in report and "FAILED case 'single row'" in err
    failed = {c["name"]: c["detail"] for c in report["cases"] if not c["passed"]}
    assert set(failed) == {"single row", "batch of 4"}
    assert all(f"malformed {card.task} prediction 0" in detail for detail in failed.values())


def test_the_response_example_of_every_task_passes_and_matches_the_response_model(model_package: Path) -> None:
    card = ModelCard.load(model_package)
    example = card.response_example()
    assert prediction_problem(example, card) is None
    assert Draft4Validator(response_schema(card)).is_valid({"predictions": [example]})


def broken(card: ModelCard) -> dict[str, dict[str, Any]]:
    """Predictions that break the card's task contract, by what is wrong with them."""
    good = card.response_example()
    cases: dict[str, dict[str, Any]] = {
        "no model_version": {k: v for k, v in good.items() if k != "model_version"},
        "empty model_version": {**good, "model_version": ""},
    }
    if card.task == REGRESSION:
        return {
            **cases,
            "value missing": {"model_version": card.version},
            "value not a number": {**good, "value": "151"},
            "value not finite": {**good, "value": math.inf},
            "value a boolean": {**good, "value": True},
        }
    cases["label past the last class"] = {**good, "label": card.classes}
    cases["negative label"] = {**good, "label": -1}
    cases["label a float"] = {**good, "label": 1.0}
    cases["label a boolean"] = {**good, "label": True}
    if card.task == BINARY:
        return {**cases, "probability above 1": {**good, "probability": 1.5}, "no probability": {"label": 1}}
    names = card.label_names
    return {
        **cases,
        "a class missing": {**good, "probabilities": {n: 1 / (len(names) - 1) for n in names[1:]}},
        "an unknown class": {**good, "probabilities": {**good["probabilities"], "not_a_class": 0.0}},
        "not summing to 1": {**good, "probabilities": {n: 0.5 / len(names) for n in names}},
        "a probability above 1": {**good, "probabilities": {n: 1.5 if i == 0 else 0 for i, n in enumerate(names)}},
        "a binary probability instead": {"label": 0, "probability": 0.9, "model_version": card.version},
    }


def test_broken_predictions_of_every_task_are_named(model_package: Path) -> None:
    card = ModelCard.load(model_package)
    cases = broken(card)
    assert len(cases) >= 6
    for name, prediction in cases.items():
        assert prediction_problem(prediction, card), f"{card.task}: '{name}' passed"
    assert prediction_problem([card.response_example()], card) == "not an object"


def test_sample_rows_are_inside_the_training_ranges_of_any_card(model_package: Path) -> None:
    card = ModelCard.load(model_package)
    rows = sample_rows(card.feature_schema, 7)
    assert len(rows) == 7 and len({tuple(row) for row in rows}) == 7
    for row in rows:
        assert len(row) == card.width
        for value, feature in zip(row, card.feature_schema["features"], strict=True):
            assert feature["training_min"] <= value <= feature["training_max"]


def test_a_missing_card_is_a_usage_error_naming_the_option(api: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        smoke(capsys, api, "--card", str(tmp_path / "metadata.json"))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--card" in err and "make model" in err

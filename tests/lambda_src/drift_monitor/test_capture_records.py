import base64
import json

import pytest
from drift_engine.capture_records import UNKNOWN_VERSION, group_capture_lines, parse_capture_line
from drift_engine.payload_decoding import MalformedPayload, decode_instances, decode_predictions
from drift_test_data import FEATURES, WIDTH, capture_line

ROW = [float(i) for i in range(WIDTH)]


@pytest.mark.parametrize("encoding", ["JSON", "CSV", "BASE64-JSON", "BASE64-CSV"])
def test_rows_parse_in_every_encoding(encoding: str) -> None:
    rows = parse_capture_line(capture_line([ROW, ROW], [0.9, 0.2], "1.0.0", encoding=encoding))
    assert len(rows) == 2
    assert [float(v) for v in rows[0].instance] == ROW
    first, second = rows[0].prediction, rows[1].prediction
    assert first is not None and second is not None
    assert first.model_version == "1.0.0"
    assert (second.label, second.probability) == (0, pytest.approx(0.2))  # P(label = 1), as captured


def test_object_instances_keep_feature_names() -> None:
    instance = dict(zip(FEATURES, ROW, strict=True))
    rows = parse_capture_line(capture_line([instance], [0.7], "1.0.0"))
    assert rows[0].instance == instance


def test_join_key_prefers_inference_id_over_event_id() -> None:
    line = capture_line([ROW], [0.7], "1.0.0", event_id="e-1", inference_id="inf-1")
    assert parse_capture_line(line)[0].join_key == "inf-1"
    assert parse_capture_line(capture_line([ROW], [0.7], "1.0.0", event_id="e-1"))[0].join_key == "e-1"


def test_base64_uses_content_type_to_tell_csv_from_json() -> None:
    body = base64.b64encode(b"1,2,3\n4,5,6").decode()
    capture = {"observedContentType": "text/csv", "data": body, "encoding": "BASE64"}
    assert decode_instances(capture) == [["1", "2", "3"], ["4", "5", "6"]]


@pytest.mark.parametrize("encoding", ["CSV", "BASE64"])
def test_a_leading_byte_order_mark_is_dropped_as_the_server_drops_it(encoding: str) -> None:
    body = "\ufeff1,2,3\n4,5,6"
    data = base64.b64encode(body.encode()).decode() if encoding == "BASE64" else body
    capture = {"observedContentType": "text/csv", "data": data, "encoding": encoding}
    assert decode_instances(capture) == [["1", "2", "3"], ["4", "5", "6"]]


def test_csv_output_columns() -> None:
    capture = {"observedContentType": "text/csv", "data": "1,0.9,2.0.0\n0,0.8,2.0.0", "encoding": "CSV"}
    predictions = decode_predictions(capture)
    assert [(p.label, p.probability, p.model_version) for p in predictions] == [(1, 0.9, "2.0.0"), (0, 0.8, "2.0.0")]


def test_response_level_version_applies_to_each_prediction() -> None:
    capture = {"data": json.dumps({"model_version": "3.0.0", "predictions": [{"label": 1, "probability": 0.6}]})}
    assert decode_predictions(capture)[0].model_version == "3.0.0"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "bad json line"),
        (json.dumps({"eventVersion": "0"}), "missing captureData"),
        (json.dumps({"captureData": {"endpointInput": {"data": "!!", "encoding": "BASE64"}}}), "bad base64"),
        (json.dumps({"captureData": {"endpointInput": {"data": "{}", "encoding": "JSON"}}}), "no instances"),
        (json.dumps({"captureData": {"endpointInput": {"encoding": "JSON"}}}), "missing data"),
    ],
)
def test_malformed_lines_raise_with_a_reason(line: str, reason: str) -> None:
    with pytest.raises(MalformedPayload, match=reason):
        parse_capture_line(line)


def test_prediction_count_mismatch_is_malformed() -> None:
    record = json.loads(capture_line([ROW, ROW], [0.9, 0.1], "1.0.0"))
    record["captureData"]["endpointOutput"]["data"] = json.dumps({"predictions": [{"label": 1}]})
    with pytest.raises(MalformedPayload, match="count mismatch"):
        parse_capture_line(json.dumps(record))


def test_grouping_by_version_counts_malformed_lines_without_failing() -> None:
    lines = [
        capture_line([ROW, ROW], [0.9, 0.1], "1.0.0"),
        capture_line([ROW], [0.9], "2.0.0", encoding="CSV"),
        "garbage",
        "",
        *["{}"] * 12,
    ]
    no_output = json.loads(capture_line([ROW], [0.9], None))
    del no_output["captureData"]["endpointOutput"]
    lines.append(json.dumps(no_output))
    batch = group_capture_lines((f"file:{i}", line) for i, line in enumerate(lines))
    assert {v: len(r) for v, r in batch.rows_by_version.items()} == {"1.0.0": 2, "2.0.0": 1, UNKNOWN_VERSION: 1}
    assert batch.records == 16  # the blank line is not a record
    assert batch.malformed_records == 13
    assert batch.malformed_reasons == {"bad json line": 1, "missing captureData": 12}
    assert len(batch.malformed_samples) == 10
    assert batch.malformed_samples[0]["source"] == "file:2"


def test_versions_unfit_for_s3_keys_are_grouped_as_unknown() -> None:
    lines = [("f:1", capture_line([ROW], [0.9], "../../etc")), ("f:2", capture_line([ROW], [0.9], "1.0.0+build.7"))]
    assert set(group_capture_lines(lines).rows_by_version) == {UNKNOWN_VERSION, "1.0.0+build.7"}


def test_the_pipelines_test_traffic_is_counted_and_left_out() -> None:
    # The API sets this inference id for the pipeline's test key only (ml_constructs/prediction_api.py).
    marked = capture_line([ROW, ROW], [0.9, 0.2], "1.0.0", inference_id="pipeline-test-c0ffee00-1111")
    ordinary = capture_line([ROW], [0.9], "1.0.0", inference_id="c0ffee00-2222")
    lookalike = capture_line([ROW], [0.9], "1.0.0", event_id="pipeline-test-evt")  # only inferenceId marks a record
    batch = group_capture_lines([("f", marked), ("f", ordinary), ("f", lookalike), ("f", marked)])
    assert batch.records == 4 and batch.test_traffic_records == 2
    assert batch.total_rows == 2 and batch.malformed_records == 0
    everything = group_capture_lines([("f", marked), ("f", ordinary)], test_prefix="")
    assert everything.test_traffic_records == 0 and everything.total_rows == 3

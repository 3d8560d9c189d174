"""Model sources a user writes: a train/data entry point pair with its model_card.json, a CSV data file, an
entry point returning ONNX bytes; and every way one can be wrong, refused with an error that names it."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_container.build_model import EXAMPLES, BuildInputError, build, check_source, configured_source, main
from model_container.card import ModelCard

CARD = {
    "model_name": "user-model",
    "model_version": "2.3.4",
    "task": "binary_classification",
    "description": "A user's model.",
    "labels": {"0": "no", "1": "yes"},
    "positive_label": 1,
    "acceptance": {"accuracy": {"min": 0.6}},
    "training": {"seed": 7, "holdout_fraction": 0.25, "hyperparameters": {"C": 1.0}},
}
LOAD = """
import numpy as np

def load():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3))
    return ["a", "b", "c"], x, (x[:, 0] + 0.1 * x[:, 1] > 0).astype(np.int64)
"""
TRAIN = """
from sklearn.linear_model import LogisticRegression

def train(x, y, *, seed, hyperparameters):
    return LogisticRegression(**hyperparameters, random_state=seed).fit(x, y)
"""


def user_package(
    root: Path, monkeypatch: pytest.MonkeyPatch, code: str = LOAD + TRAIN, card: Any = CARD
) -> dict[str, str]:
    """A package directory on sys.path under a fresh name (modules are cached per name); returns its source."""
    name = f"user_model_{uuid.uuid4().hex[:8]}"
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text(textwrap.dedent(code))
    if card is not None:
        (package / "model_card.json").write_text(json.dumps(card))
    monkeypatch.syspath_prepend(str(root))
    return {"train": f"{name}.train:train", "data": f"{name}.train:load"}


def build_into(tmp_path: Path, source: dict[str, str]) -> dict[str, Any]:
    return build(tmp_path / "dist", commit="c", contract_dir=tmp_path / "contract", source=source)


def test_a_user_source_builds_a_package_with_its_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = build_into(tmp_path, user_package(tmp_path / "src", monkeypatch))
    loaded = ModelCard.load(tmp_path / "dist")
    assert (loaded.name, loaded.version, loaded.feature_names) == (
        CARD["model_name"],
        CARD["model_version"],
        list("abc"),
    )
    assert card["holdout_metrics"]["rows"] == 50  # 0.25 of the loader's 200 rows, from the card's training block
    assert card["training"] == CARD["training"] and card["algorithm"].startswith("LogisticRegression")
    assert json.loads((tmp_path / "contract" / "feature_schema.json").read_text()) == card["feature_schema"]


def test_a_train_entry_point_may_return_onnx_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    onnx_train = TRAIN.replace("def train", "def fit") + textwrap.dedent(
        """
        from skl2onnx import to_onnx

        def train(x, y, *, seed, hyperparameters):
            model = fit(x, y, seed=seed, hyperparameters=hyperparameters)
            return to_onnx(model, x[:1].astype("float32"), options={id(model): {"zipmap": False}}).SerializeToString()
        """
    )
    card = {**CARD, "algorithm": "logistic regression, exported by the user"}
    built = build_into(tmp_path, user_package(tmp_path / "src", monkeypatch, LOAD + onnx_train, card))
    assert built["algorithm"] == card["algorithm"]
    assert built["onnx"]["outputs"] == ["label", "probabilities"] and built["onnx"]["input"] == "X"


def test_a_csv_data_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    regression = {
        **{k: v for k, v in CARD.items() if k not in ("labels", "positive_label")},
        "task": "regression",
        "target": {"name": "price", "unit": "EUR"},
        "acceptance": {"r2": {"min": 0.5}},
        "training": {"hyperparameters": {}},
    }
    code = "from sklearn.linear_model import LinearRegression\n\n"
    code += "def train(x, y, *, seed, hyperparameters):\n    return LinearRegression().fit(x, y)\n"
    source = user_package(tmp_path / "src", monkeypatch, code, regression)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 2))
    rows = [
        f"{float(a)!r},{float(2 * a - b + 0.01 * n)!r},{float(b)!r}"
        for (a, b), n in zip(x, rng.normal(size=120), strict=True)
    ]
    (tmp_path / "data.csv").write_text("size,price,age\n" + "\n".join(rows) + "\n")
    built = build_into(tmp_path, {"train": source["train"], "data": str(tmp_path / "data.csv")})
    assert [f["name"] for f in built["feature_schema"]["features"]] == ["size", "age"]  # the target column is not
    assert built["holdout_metrics"]["r2"] > 0.99
    assert built["lineage"]["dataset"]["uri"] == str(tmp_path / "data.csv")
    holdout = np.loadtxt(tmp_path / "dist" / "holdout.csv", delimiter=",")
    assert not np.array_equal(holdout[:, 0], np.round(holdout[:, 0]))  # targets keep their decimals


BROKEN_LOADERS = {
    "wrong_width": ('return ["a", "b"], np.zeros((10, 3)), np.zeros(10)', r"features must be \[rows, 2\]"),
    "wrong_rows": ('return ["a"], np.zeros((10, 1)), np.zeros(9)', r"must be \[10\] \(one per row\)"),
    "not_a_triple": ("return np.zeros((10, 1))", r"must return \(feature names, features, labels or targets\)"),
    "nan": ('x = np.ones((10, 1)); x[3, 0] = np.nan\n    return ["a"], x, np.arange(10) % 2', r"'a' of row 3 is nan"),
    "one_class": ('return ["a"], np.arange(20.0).reshape(20, 1), np.zeros(20)', r"found 1 of 2 classes"),
    "bad_label": ('return ["a"], np.arange(20.0).reshape(20, 1), np.arange(20) % 3', r"class indexes 0\.\.1"),
    "bad_name": ('return ["a b"], np.arange(20.0).reshape(20, 1), np.arange(20) % 2', r"unique identifiers"),
    "raises": ('raise RuntimeError("no database")', r"failed: RuntimeError: no database"),
}


@pytest.mark.parametrize("case", list(BROKEN_LOADERS))
def test_a_loader_returning_unusable_data_is_refused_naming_it(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, message = BROKEN_LOADERS[case]
    code = f"import numpy as np\n\ndef load():\n    {body}\n" + TRAIN
    source = user_package(tmp_path / "src", monkeypatch, code)
    with pytest.raises(BuildInputError, match=r"model\.source\.data .*" + message):
        build_into(tmp_path, source)
    assert not (tmp_path / "dist").exists() and not (tmp_path / "contract").exists()


def test_unknown_modules_and_missing_functions_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = user_package(tmp_path / "src", monkeypatch)
    module = source["train"].partition(":")[0]
    cases = {
        "no_such_package.train:train": r"model\.source\.train 'no_such_package\.train:train': cannot import",
        f"{module}:fit": rf"module '{module}' has no function 'fit'",
    }
    for train, message in cases.items():
        with pytest.raises(BuildInputError, match=message):
            build_into(tmp_path, {**source, "train": train})
    with pytest.raises(BuildInputError, match=rf"model\.source\.data '{module}:nothing'.*has no function 'nothing'"):
        build_into(tmp_path, {**source, "data": f"{module}:nothing"})
    with pytest.raises(BuildInputError, match=r"model\.source\.data .*cannot read"):
        build_into(tmp_path, {**source, "data": str(tmp_path / "missing.csv")})


def test_source_shapes_are_checked(tmp_path: Path) -> None:
    for raw, message in (
        ("model_container.models.wine.train:train", r"model\.source must be an object"),
        ({"train": "x:y"}, r"needs exactly the keys train and data"),
        ({"train": "not an entry point", "data": "x:y"}, r"model\.source\.train .* must be 'package\.module:function'"),
        ({"package": "", "train": "x:y"}, r"model\.source\.package must be the only key"),
    ):
        with pytest.raises(BuildInputError, match=message):
            check_source(raw)


def test_the_authored_card_is_checked_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for card, message in (
        (None, r"model_card\.json is missing"),
        ({**CARD, "task": "ranking"}, r"'task': must be one of"),
        ({**CARD, "acceptance": {"rmse": {"max": 1}}}, r"'acceptance\.rmse'"),
        ({**CARD, "labels": {"0": "only"}}, r"'labels'"),
        ({**CARD, "model_version": "v2"}, r"'model_version'"),
        ({**CARD, "training": {"holdout_fraction": 1.5}}, r"'training\.holdout_fraction'"),
        ({**CARD, "feature_schema": {"features": []}}, r"'feature_schema' is generated by the build"),
    ):
        with pytest.raises(BuildInputError, match=message):
            build_into(tmp_path, user_package(tmp_path / uuid.uuid4().hex, monkeypatch, card=card))


def test_a_train_function_that_returns_no_model_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = LOAD + "\ndef train(x, y, *, seed, hyperparameters):\n    return {'weights': [1, 2, 3]}\n"
    with pytest.raises(BuildInputError, match=r"returned a dict: return a fitted scikit-learn estimator or ONNX"):
        build_into(tmp_path, user_package(tmp_path / "src", monkeypatch, code))
    regression_graph = LOAD + textwrap.dedent(
        """
        from sklearn.linear_model import LinearRegression
        from skl2onnx import to_onnx

        def train(x, y, *, seed, hyperparameters):
            return to_onnx(LinearRegression().fit(x, y), x[:1].astype("float32")).SerializeToString()
        """
    )
    with pytest.raises(BuildInputError, match=r"model\.onnx: a binary_classification model needs outputs label"):
        build_into(tmp_path, user_package(tmp_path / "src2", monkeypatch, regression_graph))


def test_the_cli_reads_cdk_json_and_takes_an_example_or_a_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cdk = tmp_path / "cdk.json"
    cdk.write_text(json.dumps({"context": {"ml-platform": {"defaults": {"model": {"source": {"package": "x"}}}}}}))
    assert configured_source(cdk) == {"package": "x"}
    cdk.write_text(json.dumps({"context": {"ml-platform": {}}}))
    assert configured_source(cdk) == configured_source(tmp_path / "absent.json")  # the default example
    base = ["--out", str(tmp_path / "dist"), "--contract-dir", str(tmp_path / "contract"), "--commit", "c"]
    assert main([*base, "--example", EXAMPLES[-1]]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model_name"] == ModelCard.load(tmp_path / "dist").name
    assert main([*base, "--source", "{not json"]) == 2
    assert "--source must be a JSON object" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ({"train": "my_models.churn:train", "data": "model_container.models.wine.train:load"}, "train"),
        ({"train": "model_container.models.wine.train:train", "data": "tools.loaders:load"}, "data"),
        ({"train": "model_container.bench.run:train", "data": "model_container.models.wine.train:load"}, "train"),
        ({"train": "model_container.models.wine.train:train", "data": "data/train.csv"}, "data"),
        ({"train": "model_container.models.wine.train:train", "data": "/tmp/train.csv"}, "data"),
        ({"package": "packages/churn"}, "package"),
        ({"package": "model_container/dist"}, "package"),
    ],
)
def test_make_model_refuses_a_source_the_image_build_cannot_see(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: dict[str, str], field: str
) -> None:
    """model_container/Dockerfile copies model_container/ (Dockerfile.dockerignore leaves out dist/, bench/,
    monitoring/) and builds the source there: anything else builds here and fails in the image."""
    base = ["--out", str(tmp_path / "dist"), "--contract-dir", str(tmp_path / "contract"), "--commit", "c"]
    assert main([*base, "--source", json.dumps(source)]) == 2
    err = capsys.readouterr().err
    assert f"model.source.{field} {source[field]!r} is outside what model_container/Dockerfile copies" in err
    assert "put it under model_container/" in err
    assert not (tmp_path / "dist").exists()


def test_the_dockerfile_copies_what_the_image_check_allows() -> None:
    from model_container.build_model import IMAGE_EXCLUDED, REPO_ROOT

    dockerfile = (REPO_ROOT / "model_container" / "Dockerfile").read_text()
    assert "COPY model_container/ model_container/" in dockerfile
    ignored = (REPO_ROOT / "model_container" / "Dockerfile.dockerignore").read_text().split()
    assert {f"model_container/{name}/" for name in IMAGE_EXCLUDED} <= set(ignored)

"""The peer to beat: the stack of AWS's scikit-learn serving container, reduced to its essentials.

Flask behind gunicorn (gevent workers, one per CPU), a pickled scikit-learn pipeline loaded lazily
inside the first request a worker receives, and predict_proba per request, as AWS's toolkit does.
Run by model_container.bench.run; MODEL_PATH points at the joblib pickle.
"""

from __future__ import annotations

import json
import os
from typing import Any

import joblib
import numpy as np
from flask import Flask, Response, request

app = Flask(__name__)
_model: Any = None


def model() -> Any:
    global _model
    if _model is None:  # lazy, per worker, like sagemaker-scikit-learn-container
        _model = joblib.load(os.environ["MODEL_PATH"])
    return _model


@app.route("/ping", methods=["GET"])
def ping() -> Response:
    model()
    return Response(status=200)


@app.route("/invocations", methods=["POST"])
def invocations() -> Response:
    body = request.get_data()
    if request.content_type == "text/csv":
        rows = np.loadtxt(body.decode().splitlines(), delimiter=",", ndmin=2)
    else:
        document = json.loads(body)
        rows = np.array(document["instances"] if isinstance(document, dict) else document)
    probabilities = model().predict_proba(rows)
    return Response(json.dumps(probabilities.tolist()), mimetype="application/json")

"""The feature contract shared by the API Gateway model, the OpenAPI document and the container."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

CONTRACT_DIR = Path(__file__).parent
FEATURE_SCHEMA_PATH = CONTRACT_DIR / "feature_schema.json"


def load_feature_schema(path: Path = FEATURE_SCHEMA_PATH) -> dict[str, Any]:
    schema: dict[str, Any] = orjson.loads(path.read_bytes())
    return schema

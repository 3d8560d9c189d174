"""The API contract: generated from the model card (metadata.json) for the API Gateway, consumers and the container."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

CONTRACT_DIR = Path(__file__).parent
FEATURE_SCHEMA_PATH = CONTRACT_DIR / "feature_schema.json"
# The card of the model package `make model` leaves in model_container/dist: what the contract is generated from.
DEFAULT_CARD = CONTRACT_DIR.parent / "dist" / "metadata.json"


def load_feature_schema(path: Path = FEATURE_SCHEMA_PATH) -> dict[str, Any]:
    schema: dict[str, Any] = orjson.loads(path.read_bytes())
    return schema

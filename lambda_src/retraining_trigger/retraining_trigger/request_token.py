"""The StartPipelineExecution request token of an EventBridge event: its id, or a digest of the event.

CodePipeline API Reference, StartPipelineExecution: `clientRequestToken` has length 1 to 128 and pattern
`^[a-zA-Z0-9-]+$`. An EventBridge event id is a UUID, which fits; an event without a usable id (a hand-made test
event, a malformed redelivery) gets a digest of its canonical JSON instead, so the token is valid and the same
event still maps to the same token (a retry or a redelivery starts no second run). The reason text, which has
spaces, brackets and commas, is never a token: CodePipeline rejects it with a ValidationException.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

TOKEN_PATTERN = re.compile(r"^[a-zA-Z0-9-]+$")
MAX_TOKEN = 128


def request_token(event: Any) -> str:
    """A valid, deterministic clientRequestToken for `event`."""
    identifier = event.get("id") if isinstance(event, dict) else None
    if isinstance(identifier, str) and len(identifier) <= MAX_TOKEN and TOKEN_PATTERN.match(identifier):
        return identifier
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
    return "event-" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()

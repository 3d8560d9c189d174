"""The shipped `ml-platform` context of cdk.json, and copies of it with one value changed, for config tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

CONTEXT = json.loads((Path(__file__).resolve().parents[1] / "cdk.json").read_text())["context"]["ml-platform"]


def with_change(path: str, value: Any) -> dict[str, Any]:
    """A deep copy of CONTEXT with the dotted `path` set to `value` (missing parents created)."""
    context = copy.deepcopy(CONTEXT)
    node = context
    *parents, last = path.split(".")
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = value
    return context

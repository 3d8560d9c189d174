"""Physical names of resources that CloudFormation must be able to replace."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from constructs import IConstruct

from aws_cdk import Stack

DIGEST_LENGTH = 8


def replacement_safe_name(scope: IConstruct, base: str, create_only: Mapping[str, Any], *, max_length: int = 63) -> str:
    """`{base}-{digest}`, the digest covering every create-only property the resource is given.

    CloudFormation replaces a resource when a create-only property changes and cannot create the replacement
    under the old custom name (User Guide, "Name type"): with the digest, every such change is a new name.
    Tokens are hashed in their resolved form (a reference to another resource hashes as that reference).
    """
    resolved = Stack.of(scope).resolve(dict(create_only))
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()
    name = f"{base}-{digest[:DIGEST_LENGTH]}"
    if len(name) > max_length:
        raise ValueError(
            f"physical name {name!r} is longer than {max_length} characters: shorten the project or "
            "environment name (config keys 'ml-platform.project' / 'ml-platform.environments.<name>')"
        )
    return name

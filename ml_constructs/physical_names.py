"""Physical names of resources that CloudFormation must be able to replace."""

from __future__ import annotations

import hashlib
import json

from aws_cdk import CfnResource, Stack

DIGEST_LENGTH = 8
# Never part of a create-only digest: tags are updated in place.
UPDATABLE = ("Tags",)


def name_by_create_only_properties(
    resource: CfnResource, *, base: str, name_property: str, max_length: int = 63
) -> str:
    """Name `resource` `{base}-{digest}`, the digest covering every property it has been given so far.

    Call it once the resource has all its properties. For the resources it is used on, every property but
    the name and the tags is create-only (CloudFormation resource schemas, `createOnlyProperties`): a change
    replaces the resource, and CloudFormation cannot create the replacement under the old custom name (User
    Guide, "Name type"). With the digest, every such change comes with a new name. Tokens are hashed in their
    resolved form: a reference to another resource hashes as that reference. `name_property` is the L1
    attribute (`model_name`), which is set here and returned.
    """
    stack = Stack.of(resource)
    rendered = stack.resolve(resource._render_properties(resource._cfn_properties))
    create_only = {key: value for key, value in rendered.items() if key not in UPDATABLE}
    create_only.pop("".join(part.title() for part in name_property.split("_")), None)
    digest = hashlib.sha256(json.dumps(create_only, sort_keys=True, default=str).encode()).hexdigest()
    name = f"{base}-{digest[:DIGEST_LENGTH]}"
    if len(name) > max_length:
        raise ValueError(
            f"physical name {name!r} is longer than {max_length} characters: shorten the project or "
            "environment name (config keys 'ml-platform.project' / 'ml-platform.environments.<name>')"
        )
    setattr(resource, name_property, name)
    return name

"""Every Docker image asset is built for linux/amd64, the architecture of what runs it.

The serving image runs on SageMaker ml.* x86 instances, the drift job as an x86_64 Lambda function or Fargate task.
`cdk deploy` builds image assets on the deployer's machine, for its own architecture unless the asset names a
platform (CDK API reference, `aws_ecr_assets.DockerImageAssetProps.platform`): from an arm64 laptop an unpinned
image would not start. The cloud assembly's asset manifests record the platform each image is built for.
"""

from __future__ import annotations

import json

from tests.infra.conftest import Synthesized


def test_every_image_asset_is_built_for_linux_amd64(synthesized: Synthesized) -> None:
    images = {}
    for manifest in synthesized.outdir.rglob("*.assets.json"):
        for asset_id, image in json.loads(manifest.read_text()).get("dockerImages", {}).items():
            images[f"{manifest.relative_to(synthesized.outdir)}:{asset_id[:12]}"] = image["source"]
    assert images, "the app has image assets (serving image, drift job)"
    unpinned = {
        name: source.get("directory") for name, source in images.items() if source.get("platform") != "linux/amd64"
    }
    assert not unpinned, f"image assets built for the deployer's architecture: {unpinned}"

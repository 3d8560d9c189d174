#!/usr/bin/env python3
"""CDK entry point: one stage per environment in cdk.json (`-c env=dev` selects), all nag packs on."""

import os

from aws_cdk import App

from stacks.app_builder import build_stages

app = App()
build_stages(
    app,
    default_account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
    default_region=os.environ.get("CDK_DEFAULT_REGION"),
)
app.synth()

"""Shared test settings: offline AWS credentials and quiet jsii."""

import os

# No test may reach AWS: fake credentials, a fixed region, and no metadata-service probing.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
)
pytest_plugins = ["tests.model_packages"]  # example_package() and the model_package fixture

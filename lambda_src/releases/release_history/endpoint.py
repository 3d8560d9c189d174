"""SageMaker calls for the one endpoint under management."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from .timeutil import EPOCH, parse_time

# While in one of these, UpdateEndpoint is rejected; callers must wait, not pile on.
BUSY_STATUSES = frozenset({"Creating", "Updating", "RollingBack", "SystemUpdating", "Deleting"})

_EVENT_STATUS = {  # EventBridge uses IN_SERVICE style, the API InService style
    "IN_SERVICE": "InService",
    "CREATING": "Creating",
    "UPDATING": "Updating",
    "SYSTEM_UPDATING": "SystemUpdating",
    "ROLLING_BACK": "RollingBack",
    "DELETING": "Deleting",
    "FAILED": "Failed",
    "OUT_OF_SERVICE": "OutOfService",
}


def normalize_status(status: str) -> str:
    return _EVENT_STATUS.get(status, status)


@dataclass(frozen=True)
class EndpointState:
    """What DescribeEndpoint says right now."""

    name: str
    status: str
    config_name: str
    last_modified: datetime
    failure_reason: str | None = None
    # While an update runs, DescribeEndpoint still names the old config; PendingDeploymentSummary names the new
    # one (SageMaker API reference, DescribeEndpoint: PendingDeploymentSummary.EndpointConfigName).
    pending_config: str | None = None

    @property
    def busy(self) -> bool:
        return self.status in BUSY_STATUSES

    def moving_to(self, config_name: str) -> bool:
        """The endpoint serves `config_name` or an update onto it is under way."""
        return self.config_name == config_name or (self.busy and self.pending_config == config_name)


class EndpointGateway:
    """Describe, tag-read and update one endpoint."""

    def __init__(self, client: Any, endpoint_name: str) -> None:
        self._client = client
        self.name = endpoint_name

    def describe(self) -> EndpointState:
        raw = self._client.describe_endpoint(EndpointName=self.name)
        return EndpointState(
            name=self.name,
            status=raw["EndpointStatus"],
            config_name=raw["EndpointConfigName"],
            last_modified=parse_time(raw.get("LastModifiedTime")) or EPOCH,
            failure_reason=raw.get("FailureReason"),
            pending_config=(raw.get("PendingDeploymentSummary") or {}).get("EndpointConfigName"),
        )

    def update_to(self, config_name: str) -> None:
        # RetainAllVariantProperties keeps instance type/count and autoscaling as they are now.
        # The deployment config is deliberately not retained: the alarm that triggered this
        # rollback is still in ALARM and would make SageMaker's auto-rollback abort the rollback.
        self._client.update_endpoint(
            EndpointName=self.name,
            EndpointConfigName=config_name,
            RetainAllVariantProperties=True,
            RetainDeploymentConfig=False,
        )

    def config_metadata(self, config_name: str) -> dict[str, Any]:
        """Release metadata from the endpoint config's tags (model-version, model-hash, commit, ...)."""
        try:
            config = self._client.describe_endpoint_config(EndpointConfigName=config_name)
            tags = self._client.list_tags(ResourceArn=config["EndpointConfigArn"], MaxResults=100)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ValidationException":
                return {}  # config already deleted: keep a record with the name only
            raise
        tag = {t["Key"]: t["Value"] for t in tags.get("Tags", [])}
        image = tag.get("image") or tag.get("image-digest") or tag.get("image-uri")
        if not image and config.get("ProductionVariants"):
            image = self._model_image(config["ProductionVariants"][0].get("ModelName"))
        approvers = [a.strip() for a in tag.get("approved-by", "").split(",") if a.strip()]
        return {
            "model_version": tag.get("model-version"),
            "model_hash": tag.get("model-hash"),
            "commit": tag.get("commit"),
            "image": image,
            "approved_by": approvers,
        }

    def _model_image(self, model_name: str | None) -> str | None:
        if not model_name:
            return None
        try:
            model = self._client.describe_model(ModelName=model_name)
        except ClientError:
            return None  # the image is nice-to-have; never fail recording for it
        container: dict[str, Any] = model.get("PrimaryContainer") or next(iter(model.get("Containers") or []), {})
        image: str | None = container.get("Image")
        return image

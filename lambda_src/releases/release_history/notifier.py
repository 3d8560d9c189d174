"""SNS notifications for operators."""

import json
from typing import Any


class Notifier:
    """Publishes one JSON message per decision to the release topic."""

    def __init__(self, client: Any, topic_arn: str) -> None:
        self._client = client
        self.topic_arn = topic_arn

    def notify(self, subject: str, **details: Any) -> None:
        if not self.topic_arn:
            return
        self._client.publish(TopicArn=self.topic_arn, Subject=subject[:100],
                             Message=json.dumps({"subject": subject, **details}, default=str, indent=2))

"""SNS notifications for operators."""

import json
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)


class Notifier:
    """Publishes one JSON message per decision to the release topic.

    A failed publish never fails the decision it reports (the decision is already recorded): the message is
    logged in full at ERROR and counted in `failures`, which the handlers turn into a NotificationFailed metric.
    """

    def __init__(self, client: Any, topic_arn: str) -> None:
        self._client = client
        self.topic_arn = topic_arn
        self.failures = 0

    def notify(self, subject: str, **details: Any) -> bool:
        if not self.topic_arn:
            return True
        message = json.dumps({"subject": subject, **details}, default=str, indent=2)
        try:
            self._client.publish(TopicArn=self.topic_arn, Subject=_subject(subject), Message=message)
        except (ClientError, BotoCoreError) as error:
            self.failures += 1
            logger.error("notification failed; the message follows", extra={"error": str(error), "notice": message})
            return False
        return True


def _subject(subject: str) -> str:
    # SNS API Reference, Publish: Subject is ASCII text without line breaks, "less than 100 characters long".
    flat = " ".join(subject.split())
    return flat.encode("ascii", "replace").decode("ascii")[:99]

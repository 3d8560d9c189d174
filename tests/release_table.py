"""The release-history table as ml_constructs/release_history_table.py declares it, for moto-backed tests."""

from __future__ import annotations

from typing import Any

STATUS_INDEX = "status-index"


def create_release_table(dynamodb: Any, name: str) -> Any:
    """Create `name` on a boto3 DynamoDB resource: (pk, sk) keys and the status index."""
    return dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "status_key", "status_changed_at")
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": STATUS_INDEX,
                "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [
                    {"AttributeName": "status_key", "KeyType": "HASH"},
                    {"AttributeName": "status_changed_at", "KeyType": "RANGE"},
                ],
            }
        ],
    )

"""Small S3 helpers: list keys under prefixes and stream JSON Lines."""

from collections.abc import Iterable, Iterator
from typing import Any


def list_keys(s3: Any, bucket: str, prefixes: Iterable[str], suffix: str = ".jsonl") -> list[str]:
    keys: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    for prefix in prefixes:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []) if obj["Key"].endswith(suffix))
    return sorted(keys)


def iter_lines(s3: Any, bucket: str, keys: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Yield (source, line) for every line of every object; source is `key:lineno` for reports."""
    for key in keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        for number, raw in enumerate(body.iter_lines(), start=1):
            yield f"{key}:{number}", raw.decode("utf-8", errors="replace")

"""Small S3 helpers: list a window's objects and stream their JSON Lines, one line at a time.

SageMaker writes data capture as `.jsonl` objects under `{prefix}/{endpoint}/{variant}/yyyy/mm/dd/hh/` ("Capture
data from real-time endpoint", View Captured Data: https://docs.aws.amazon.com/sagemaker/latest/dg/
model-monitor-data-capture-endpoint.html). It does not write `.jsonl.gz`, but capture copied back from an archive
or uploaded ground truth may be gzipped: those are read too. Any other object under the prefix is counted and named
in the report (`skipped`), never dropped silently.
"""

import gzip
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
MAX_SAMPLES = 10
# S3 API reference, GetObject: a key deleted since it was listed (a lifecycle expiry at the hour's edge) is 404
# NoSuchKey to a reader holding s3:ListBucket.
_GONE = {"NoSuchKey", "404", "NotFound"}


@dataclass
class ObjectStats:
    """What became of the objects listed under a window's prefixes."""

    listed: int = 0  # objects read or attempted (.jsonl and .jsonl.gz)
    missing: int = 0  # listed, then gone before GetObject (NoSuchKey)
    unreadable: int = 0  # not valid gzip (lines read before the damage are kept)
    skipped: int = 0  # other suffixes, never read
    samples: list[dict[str, str]] = field(default_factory=list)

    def note(self, key: str, what: str) -> None:
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append({"key": key, "reason": what})

    def as_dict(self) -> dict[str, Any]:
        return {
            "missing": self.missing,
            "unreadable": self.unreadable,
            "skipped": self.skipped,
            "samples": self.samples,
        }


def list_keys(
    s3: Any,
    bucket: str,
    prefixes: Iterable[str],
    suffix: str | tuple[str, ...] = JSONL_SUFFIXES,
    stats: ObjectStats | None = None,
) -> list[str]:
    """Keys under `prefixes` ending with `suffix`, sorted; others are counted in `stats.skipped`."""
    keys: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    for prefix in prefixes:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(suffix):
                    keys.append(obj["Key"])
                elif stats is not None and not obj["Key"].endswith("/"):
                    stats.skipped += 1
                    stats.note(obj["Key"], "not .jsonl or .jsonl.gz: not read")
    if stats is not None:
        stats.listed += len(keys)
    return sorted(keys)


def _raw_lines(body: Any, key: str) -> Iterator[bytes]:
    if key.endswith(".gz"):
        # Streamed: GzipFile reads the body in blocks, never the whole object.
        for raw in gzip.GzipFile(fileobj=body, mode="rb"):
            yield raw.rstrip(b"\r\n")
    else:
        yield from body.iter_lines()


def iter_lines(
    s3: Any, bucket: str, keys: Iterable[str], stats: ObjectStats | None = None
) -> Iterator[tuple[str, str]]:
    """Yield (source, line) for every line of every object; source is `key:lineno` for reports.

    An object gone between list and read (NoSuchKey) and a damaged gzip object are counted in `stats` and skipped;
    any other AWS error is raised (the run fails and Lambda retries it)."""
    stats = stats if stats is not None else ObjectStats()
    for key in keys:
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in _GONE:
                raise
            stats.missing += 1
            stats.note(key, "NoSuchKey: deleted between list and read")
            continue
        try:
            for number, raw in enumerate(_raw_lines(body, key), start=1):
                yield f"{key}:{number}", raw.decode("utf-8", errors="replace")
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:  # a truncated or non-gzip .gz object
            stats.unreadable += 1
            stats.note(key, f"unreadable gzip: {error}")

"""A training snapshot: rows from each source in one canonical CSV, its content hash and its manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SNAPSHOT_FILE = "snapshot.csv"
MANIFEST_FILE = "manifest.json"
# Row order in a snapshot: the configured (or bundled) dataset first, then the fresh labelled traffic.
SOURCES = ("base", "captured")
FORMAT = "snapshot.csv: header `source,label,<features in feature_schema order>`, floats as Python repr, LF"


class SnapshotError(ValueError):
    """An input that cannot become (or a file that is not) a snapshot: unreadable, malformed or tampered."""


class SnapshotRefused(ValueError):
    """A well-formed snapshot that fails a configured check (too few rows, a class too rare)."""


@dataclass(frozen=True)
class Part:
    """The rows one source contributes, and what the manifest says about where they came from."""

    source: str
    features: np.ndarray
    labels: np.ndarray
    description: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise SnapshotError(f"unknown source {self.source!r} (known: {', '.join(SOURCES)})")


@dataclass(frozen=True)
class Checks:
    """What a snapshot must satisfy (`ml-platform.pipeline.training`)."""

    min_rows: int = 1
    min_class_fraction: float = 0.0
    # Classes of a classifier's labels 0..classes-1 (each checked against min_class_fraction); None: regression
    # targets, which have no classes.
    classes: int | None = 2


@dataclass(frozen=True)
class Snapshot:
    """Rows of every source, in order, with the hash of their canonical CSV."""

    feature_names: tuple[str, ...]
    sources: np.ndarray  # source name of each row
    features: np.ndarray
    labels: np.ndarray
    content_sha256: str
    manifest: Mapping[str, Any]

    def part(self, source: str) -> tuple[np.ndarray, np.ndarray]:
        """(features, labels) of one source's rows, in snapshot order."""
        rows = self.sources == source
        return self.features[rows], self.labels[rows]


def canonical_csv(
    names: Sequence[str], sources: Sequence[str] | np.ndarray, features: np.ndarray, labels: np.ndarray
) -> bytes:
    """The one serialisation a snapshot has: the hash is of these bytes, so equal data gives an equal hash.
    repr() is the shortest exact round trip of a float, so a parsed snapshot serialises to the same bytes."""
    lines = [",".join(["source", "label", *names])]
    for source, label, row in zip(sources, labels, features, strict=True):
        lines.append(f"{source},{label_text(label)}," + ",".join(repr(float(value)) for value in row))
    return ("\n".join(lines) + "\n").encode()


def label_text(label: Any) -> str:
    """A class label as an integer, a regression target as the shortest exact float: parsing tells them apart."""
    if isinstance(label, int | np.integer):
        return str(int(label))
    return repr(float(label))


def parse_label(cell: str) -> int | float:
    try:
        return int(cell)
    except ValueError:
        return float(cell)


def label_array(labels: Sequence[Any] | np.ndarray) -> np.ndarray:
    """int64 labels of a classifier, float64 targets of a regressor."""
    array = np.asarray(labels)
    if array.dtype.kind in "iub" or all(isinstance(v, int) for v in labels):
        return array.astype(np.int64)
    return array.astype(np.float64)


def label_distribution(labels: np.ndarray) -> dict[str, int]:
    return {str(label): int(count) for label, count in zip(*np.unique(labels, return_counts=True), strict=True)}


def _refusals(labels: np.ndarray, checks: Checks) -> list[str]:
    reasons = []
    if labels.size < checks.min_rows:
        reasons.append(f"{labels.size} rows is below training.min_rows {checks.min_rows}")
    if checks.classes is None:
        return reasons
    counts = {label: int((labels == label).sum()) for label in range(checks.classes)}
    for label, count in counts.items():
        fraction = count / labels.size if labels.size else 0.0
        if fraction < checks.min_class_fraction:
            reasons.append(
                f"label {label} makes up {fraction:.3f} of the rows ({count} of {labels.size}), below "
                f"training.min_class_fraction {checks.min_class_fraction}"
            )
    return reasons


def assemble(names: Sequence[str], parts: Sequence[Part], checks: Checks) -> Snapshot:
    """One snapshot from `parts` (in SOURCES order); raises SnapshotRefused naming every failed check."""
    ordered = sorted(parts, key=lambda part: SOURCES.index(part.source))
    features = np.vstack([part.features.reshape(-1, len(names)) for part in ordered]).astype(np.float64)
    labels = label_array(np.concatenate([part.labels for part in ordered]))
    sources = np.concatenate([np.full(len(part.labels), part.source) for part in ordered])
    reasons = _refusals(labels, checks)
    if reasons:
        raise SnapshotRefused("; ".join(reasons))
    content = canonical_csv(names, sources, features, labels)
    digest = hashlib.sha256(content).hexdigest()
    manifest = {
        "format": FORMAT,
        "content_sha256": digest,
        "rows": int(labels.size),
        "feature_names": list(names),
        **({"label_distribution": label_distribution(labels)} if labels.dtype.kind == "i" else {}),
        "sources": [{"source": part.source, "rows": len(part.labels), **part.description} for part in ordered],
        "checks": {"min_rows": checks.min_rows, "min_class_fraction": checks.min_class_fraction},
    }
    return Snapshot(tuple(names), sources, features, labels, digest, manifest)


def write(snapshot: Snapshot, out: Path, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """snapshot.csv and manifest.json into `out`; returns the manifest written (plus `extra`, e.g. its S3 URI)."""
    manifest = {**snapshot.manifest, **(extra or {})}
    out.mkdir(parents=True, exist_ok=True)
    (out / SNAPSHOT_FILE).write_bytes(
        canonical_csv(snapshot.feature_names, snapshot.sources, snapshot.features, snapshot.labels)
    )
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _parse_rows(content: bytes, path: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    reader = csv.reader(io.StringIO(content.decode("utf-8")))
    header = next(reader, None)
    if not header or header[:2] != ["source", "label"]:
        raise SnapshotError(f"{path}: the header must start with source,label")
    names, sources, labels, rows = header[2:], [], [], []
    for number, row in enumerate(reader, start=2):
        if len(row) != len(header) or row[0] not in SOURCES:
            raise SnapshotError(f"{path}:{number}: expected {len(header)} cells and a known source")
        try:
            values = [float(cell) for cell in row[2:]]
            labels.append(parse_label(row[1]))
        except ValueError as error:
            raise SnapshotError(f"{path}:{number}: {error}") from None
        if not all(math.isfinite(value) for value in values):
            raise SnapshotError(f"{path}:{number}: a feature is not a finite number")
        sources.append(row[0])
        rows.append(values)
    return names, sources, np.array(rows, dtype=np.float64).reshape(-1, len(names)), label_array(labels)


def load(path: Path) -> Snapshot:
    """Read a snapshot directory (or its snapshot.csv) and check it is the canonical file its manifest names."""
    directory = path.parent if path.name == SNAPSHOT_FILE else path
    try:
        content = (directory / SNAPSHOT_FILE).read_bytes()
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
    except (OSError, ValueError) as error:
        raise SnapshotError(f"cannot read the snapshot in {directory}: {error}") from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != manifest.get("content_sha256"):
        raise SnapshotError(f"{directory / SNAPSHOT_FILE} sha256 {digest} is not the manifest's content_sha256")
    names, sources, features, labels = _parse_rows(content, directory / SNAPSHOT_FILE)
    if canonical_csv(names, sources, features, labels) != content:
        raise SnapshotError(f"{directory / SNAPSHOT_FILE} is not in canonical form ({FORMAT})")
    return Snapshot(tuple(names), np.array(sources), features, labels, digest, manifest)

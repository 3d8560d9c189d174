"""Training snapshots for retraining: the configured dataset plus fresh labelled traffic, hashed and checked.

    python -m model_container.dataset build --out build/snapshot [--dataset-uri s3://bucket/datasets/v3/] \
        [--capture-uri s3://CAPTURE/capture/ENDPOINT/primary/ --labels-uri s3://CAPTURE/GROUND_TRUTH/ \
         --until 2026-12-01T00:00:00Z --days 30] [--min-rows 500 --min-class-fraction 0.2] \
        [--upload s3://ARTIFACTS/datasets/ --kms-key-id KEY]
    python -m model_container.dataset parent --endpoint E --table T --artifacts-bucket B --out build/parent.json
    (either with [--region PIPELINE_REGION] [--environment-profile PROFILE --environment-region PROD_REGION])

`build` joins (a) the CSV files under `--dataset-uri` (without it, the bundled dataset) with (b) the captured
requests of the window that have ground-truth labels, read and joined by the drift engine's own code
(lambda_src/drift_monitor/drift_engine), and writes `snapshot.csv` (canonical: the same rows give the same bytes)
and `manifest.json` (content_sha256 of snapshot.csv, rows and label distribution, each source's URIs, object
versions and dropped rows). Rows outside the feature contract's ranges are left out: the API would refuse them.
`parent` writes the live model's metadata.json, the parent of a retraining build (build_model --parent).
Production's reads (release table, baselines, `--dataset-uri`, capture, labels) go through `--environment-profile`
in `--environment-region`; the `--upload` (the pipeline's bucket) keeps the default credentials in `--region`.

Exit codes: 0 written, 2 unusable input, 3 AWS error, 4 snapshot refused (below --min-rows, or a class below
--min-class-fraction): the message names the check.
"""

from model_container.dataset.snapshot import (
    MANIFEST_FILE,
    SNAPSHOT_FILE,
    SOURCES,
    Checks,
    Part,
    Snapshot,
    SnapshotError,
    SnapshotRefused,
    assemble,
    canonical_csv,
    load,
    write,
)

__all__ = [
    "MANIFEST_FILE",
    "SNAPSHOT_FILE",
    "SOURCES",
    "Checks",
    "Part",
    "Snapshot",
    "SnapshotError",
    "SnapshotRefused",
    "assemble",
    "canonical_csv",
    "load",
    "write",
]

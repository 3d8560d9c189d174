"""A local stand-in for SageMaker Batch Transform's data plane, to run the serving container in batch mode.

It does to a container on 127.0.0.1 what a transform job does to the container on its instance, as AWS documents it:
- The container runs with SAGEMAKER_BATCH=true, plus SAGEMAKER_MAX_PAYLOAD_IN_MB, SAGEMAKER_BATCH_STRATEGY and
  SAGEMAKER_MAX_CONCURRENT_TRANSFORMS only for the values the job sets (`container_environment`; SageMaker Developer
  Guide, "Use Your Own Inference Code with Batch Transform").
- Before any invocation it asks GET /execution-parameters; each setting comes from the job first, then from the
  container's answer, then from SageMaker's defaults (same page, "How Containers Serve Requests"; defaults from the
  API reference, CreateTransformJob: MaxConcurrentTransforms 1, MaxPayloadInMB 6). A container without the
  endpoint (404) gets the defaults. BatchStrategy has no documented default: MultiRecord is assumed.
- SplitType=Line splits each input file on line boundaries into records; MultiRecord packs as many whole records
  into a mini-batch as fit in MaxPayloadInMB (MB = 2**20 bytes, the unit the container's limit uses), SingleRecord
  sends one record per request; SplitType=None sends the whole file. A record (or an unsplit file) larger than
  MaxPayloadInMB fails the file without a request ("Use Batch Transform", Batch Transform Errors: exceeding
  MaxPayloadInMB "might happen ... if individual records within the dataset exceed the limit"). Files are
  processed separately: mini-batches never span two files (same page).
- Up to MaxConcurrentTransforms requests are in flight at once (CreateTransformJob, MaxConcurrentTransforms: "The
  maximum number of parallel requests that can be sent to each instance").
- Output: `<input name>.out` holds the responses in input order; AssembleWith=Line ends every response with a line
  break (TransformOutput, AssembleWith: "To add a newline character at the end of every transformed record, specify
  Line"; a response that already ends with one gets none more - our reading, which makes the output one line per
  input line when the container answers one newline-terminated line per record). AssembleWith=None concatenates.
- A file any of whose requests is not answered 200 gets no output file; the other files are still processed and
  the job is Failed ("If an input file contains a bad record, the transform job doesn't create an output file for
  that input file ... a transform job continues to process input files even if it fails to process one").

Not modelled: S3, retries (ModelClientConfig.InvocationsMaxRetries), timeouts beyond the client socket timeout,
several instances, DataProcessing filters and joins, compression, RecordIO/TFRecord.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

MB = 1024 * 1024
DEFAULTS = {"MaxConcurrentTransforms": 1, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 6}
STRATEGIES = {"MULTI_RECORD": "MultiRecord", "SINGLE_RECORD": "SingleRecord"}  # container spelling -> API spelling


@dataclass(frozen=True)
class TransformJob:
    """The CreateTransformJob settings the data plane uses; None means "not set in the request"."""

    content_type: str = "text/csv"
    accept: str | None = None
    split_type: Literal["Line", "None"] = "Line"
    batch_strategy: Literal["MultiRecord", "SingleRecord"] | None = None
    max_payload_mb: int | None = None
    max_concurrent_transforms: int | None = None
    assemble_with: Literal["Line", "None"] = "Line"


def container_environment(job: TransformJob) -> dict[str, str]:
    """The variables SageMaker sets on the container for `job`: SAGEMAKER_BATCH always, the rest only if set."""
    environment = {"SAGEMAKER_BATCH": "true"}
    if job.max_payload_mb is not None:
        environment["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(job.max_payload_mb)
    if job.batch_strategy is not None:
        environment["SAGEMAKER_BATCH_STRATEGY"] = {v: k for k, v in STRATEGIES.items()}[job.batch_strategy]
    if job.max_concurrent_transforms is not None:
        environment["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(job.max_concurrent_transforms)
    return environment


@dataclass(frozen=True)
class Settings:
    """What the job runs with, after precedence."""

    max_concurrent_transforms: int
    batch_strategy: str
    max_payload_mb: int


@dataclass
class FileResult:
    """One input file: its output (None when it failed), why it failed, and how it was sent."""

    name: str
    output: bytes | None = None
    error: str | None = None
    requests: int = 0
    max_in_flight: int = 0
    mini_batch_records: list[int] = field(default_factory=list)


@dataclass
class JobResult:
    status: Literal["Completed", "Failed"]
    settings: Settings
    files: list[FileResult]

    @property
    def failure_reason(self) -> str | None:
        failed = [f"{f.name}: {f.error}" for f in self.files if f.error]
        return "; ".join(failed) or None


class TransformFileError(Exception):
    """An input file cannot be transformed; the message says which record or request and why."""


class BatchDriver:
    """Runs `job` against the container listening on 127.0.0.1:`port`."""

    def __init__(self, port: int, job: TransformJob, timeout_s: float = 60) -> None:
        self.port, self.job, self.timeout_s = port, job, timeout_s
        self.settings = self._resolve()

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)

    def _resolve(self) -> Settings:
        connection = self._connection()
        try:
            connection.request("GET", "/execution-parameters")
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        offered = json.loads(body) if response.status == 200 else {}
        if "BatchStrategy" in offered:
            offered["BatchStrategy"] = STRATEGIES[offered["BatchStrategy"]]
        job = {
            "MaxConcurrentTransforms": self.job.max_concurrent_transforms or None,  # 0 means "not set" too
            "BatchStrategy": self.job.batch_strategy,
            "MaxPayloadInMB": self.job.max_payload_mb,
        }
        chosen = {key: next(v for v in (job[key], offered.get(key), DEFAULTS[key]) if v is not None) for key in job}
        return Settings(chosen["MaxConcurrentTransforms"], chosen["BatchStrategy"], chosen["MaxPayloadInMB"])

    # --- splitting --------------------------------------------------------------------------------------------
    def mini_batches(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        """(first record's 1-based line in the file, request body) per request, in file order."""
        limit, over = self.settings.max_payload_mb * MB, f"over MaxPayloadInMB={self.settings.max_payload_mb}"
        if self.job.split_type == "None":
            if len(data) > limit:
                raise TransformFileError(f"the file has {len(data)} bytes, {over}")
            yield 1, data
            return
        records = [line + b"\n" for line in data.splitlines()]
        single = self.settings.batch_strategy == "SingleRecord"
        body: list[bytes] = []
        size, first = 0, 1
        for number, record in enumerate(records, start=1):
            if len(record) > limit:
                raise TransformFileError(f"record at line {number} has {len(record)} bytes, {over}")
            if body and (single or size + len(record) > limit):
                yield first, b"".join(body)
                body, size, first = [], 0, number
            body.append(record)
            size += len(record)
        if body:
            yield first, b"".join(body)

    # --- sending ----------------------------------------------------------------------------------------------
    def transform_data(self, name: str, data: bytes) -> FileResult:
        result = FileResult(name)
        try:
            batches = list(self.mini_batches(data))
        except TransformFileError as error:
            result.error = str(error)
            return result
        result.mini_batch_records = [body.count(b"\n") for _, body in batches]
        local = threading.local()
        lock = threading.Lock()
        in_flight = 0

        def send(first_line: int, body: bytes) -> tuple[int, int, bytes]:
            nonlocal in_flight
            if not hasattr(local, "connection"):
                local.connection = self._connection()  # one keep-alive connection per concurrent slot
            headers = {"Content-Type": self.job.content_type}
            if self.job.accept:
                headers["Accept"] = self.job.accept
            with lock:
                in_flight += 1
                result.max_in_flight = max(result.max_in_flight, in_flight)
            try:
                local.connection.request("POST", "/invocations", body=body, headers=headers)
                response = local.connection.getresponse()
                return first_line, response.status, response.read()
            finally:
                with lock:
                    in_flight -= 1

        with ThreadPoolExecutor(max_workers=self.settings.max_concurrent_transforms) as pool:
            answers = [pool.submit(send, first, body) for first, body in batches]
            outputs = []
            for future in answers:  # in submission order, whatever order they finish in
                first_line, status, body = future.result()
                result.requests += 1
                if status != 200:
                    result.error = f"mini-batch from line {first_line}: {status} {body.decode(errors='replace')}"
                    break
                outputs.append(body if self.job.assemble_with == "None" or body.endswith(b"\n") else body + b"\n")
        if result.error is None:
            result.output = b"".join(outputs)
        return result

    def run(self, input_dir: Path, output_dir: Path) -> JobResult:
        """Every file of `input_dir` (an S3Prefix), each to `output_dir/<name>.out` unless it failed."""
        output_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for path in sorted(p for p in input_dir.iterdir() if p.is_file()):
            result = self.transform_data(path.name, path.read_bytes())
            if result.output is not None:
                (output_dir / f"{path.name}.out").write_bytes(result.output)
            files.append(result)
        status: Literal["Completed", "Failed"] = "Failed" if any(f.error for f in files) else "Completed"
        return JobResult(status, self.settings, files)

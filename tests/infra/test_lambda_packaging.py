"""Lambda packaging: every function in the cloud assembly imports its handler with only what Lambda gives it.

For each AWS::Lambda::Function of every template (the app's, the stages', the pipeline's nested stage
assemblies), by package type and runtime:

- Zip functions on a Python runtime: a fresh `python -I -S -B` (no site-packages, no PYTHON* variables)
  whose sys.path is exactly the asset directory, the declared layers' directories, the runtime's packages
  directory (Lambda's documented order) and the standard library imports the handler's module; the handler
  attribute must exist, be callable and come from the asset. The runtime's packages are what AWS documents
  (the SDK for Python: boto3 and its requirements); a public layer's are what its publisher documents
  (Powertools v3: `aws-lambda-powertools[all]` minus the SDK); see tests/infra/lambda_runtime.py for the
  pages. Both are linked once per session from the distributions installed in .venv, never downloaded. An
  unknown layer ARN, or a layer built for another Python or architecture, fails with what to add. The
  process gets the function's template Environment (intrinsics become placeholder strings) plus Lambda's
  reserved variables, so module-level `os.environ[...]` reads behave as deployed.
- Container-image functions: the Dockerfile is replayed offline (FROM an AWS Python base image, ARG with
  CDK's build arguments, ENV, WORKDIR, COPY from the build context, `pip install` of requirements files or
  specs, CMD or the template's ImageConfig.Command), then CMD's handler is imported the same way from /var/task
  as COPY built it, the base image's SDK and what pip installed (linked from .venv; a pin .venv does not
  match fails). Not checked, and why: that the image builds and pip resolves its requirements from the index
  (no Docker, no network here), the base image's packages beyond the SDK and its exact Python, manylinux/glibc
  compatibility of compiled wheels on Amazon Linux, and RUN steps other than pip install (printed, not
  replayed).
- Other runtimes: only CDK-provided Node.js handlers (custom-resource providers) are expected; they are
  listed and skipped by runtime. Any other runtime fails until it is modelled.

Limits common to both checks: the interpreter is .venv's (Python 3.11), not the runtime's 3.13, so imports
of stdlib modules removed by 3.12/3.13 are found by scanning the function's own modules instead; the
packages are .venv's versions (the layer's Powertools may be older than .venv's 3.37.0); only import time
is exercised, not an invocation.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.infra.conftest import Synthesized
from tests.infra.lambda_runtime import (
    Environments,
    Function,
    ImageBuilds,
    ImportResult,
    Placeholders,
    StackContext,
    check_image_function,
    check_zip_function,
    lambda_functions,
    stack_templates,
)

POWERTOOLS = "arn:aws:lambda:eu-west-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-x86_64:27"
CDK_PROVIDED_RUNTIMES = ("nodejs",)  # custom-resource providers CDK ships (e.g. the default-SG restriction)


@pytest.fixture(scope="session")
def environments(tmp_path_factory: pytest.TempPathFactory) -> Environments:
    return Environments(tmp_path_factory.mktemp("lambda-environments"))


@pytest.fixture(scope="session")
def functions(synthesized: Synthesized) -> list[Function]:
    templates = {context.template for context, _ in stack_templates(synthesized.outdir)}
    # Every template of the assembly is read, the pipeline's nested stage assemblies included.
    assert templates == set(synthesized.outdir.resolve().rglob("*.template.json")), templates
    found = lambda_functions(synthesized.outdir)
    assert found, f"no AWS::Lambda::Function in the assembly at {synthesized.outdir}"
    return found


def _is_python_zip(function: Function) -> bool:
    return function.package_type == "Zip" and (function.runtime or "").startswith("python")


def _run_checks(
    functions: list[Function], check: Callable[[Function], ImportResult], *, label: str
) -> list[ImportResult]:
    """One interpreter per distinct function, two at a time; functions whose every input to the check is the
    same (the pipeline's prod stage and the prod stage: same asset, handler, layers, environment) share one."""
    groups: dict[str, list[Function]] = {}
    for function in functions:
        groups.setdefault(repr(dataclasses.replace(function, stack="", logical_id="")), []).append(function)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        checked = list(pool.map(lambda members: check(members[0]), groups.values()))
    print(f"\n{label}: {len(functions)} functions, {len(groups)} distinct, in {time.monotonic() - started:.1f} s")
    results = []
    for members, result in zip(groups.values(), checked, strict=True):
        for member in members:
            results.append(dataclasses.replace(result, label=member.label))
            print(f"  {'ok  ' if result.ok else 'FAIL'} {member.label}")
    return results


def _report(results: list[ImportResult], environments: Environments) -> str:
    lines = []
    for result in results:
        if not result.ok:
            lines += [f"{result.label}:", *(f"  - {problem}" for problem in result.problems)]
            lines += [f"    {line}" for line in result.detail.strip().splitlines()[-12:]]
    if environments.unmodelled():
        lines.append(f"(layer contents not installed in .venv, so not importable here: {environments.unmodelled()})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the synthesized app


def test_python_zip_functions_import_their_handler_with_only_runtime_and_declared_layers(
    functions: list[Function], environments: Environments
) -> None:
    zips = [f for f in functions if _is_python_zip(f)]
    assert zips, "no Python zip function found: the discovery of the assembly's templates is broken"
    results = _run_checks(zips, lambda f: check_zip_function(f, environments), label="Python zip functions")
    assert all(r.ok for r in results), _report(results, environments)


def test_container_image_functions_install_and_copy_what_their_handler_imports(
    functions: list[Function], environments: Environments, tmp_path: Path
) -> None:
    images = [f for f in functions if f.package_type == "Image"]
    builds = ImageBuilds(tmp_path)
    results = _run_checks(images, lambda f: check_image_function(f, environments, builds), label="image functions")
    notes = sorted({line for result in results for line in result.detail.splitlines() if line.startswith("RUN")})
    print("\n".join(f"  {note}" for note in notes))
    assert all(r.ok for r in results), _report(results, environments)


def test_other_functions_are_cdk_provided_node_handlers_and_are_skipped(functions: list[Function]) -> None:
    others = [f for f in functions if f.package_type == "Zip" and not _is_python_zip(f)]
    unexpected = [f"{f.label}: {f.runtime}" for f in others if not (f.runtime or "").startswith(CDK_PROVIDED_RUNTIMES)]
    assert not unexpected, f"runtimes the packaging check does not model: {unexpected}"
    listed = "; ".join(f"{f.label} [{f.runtime}, {f.handler}]" for f in others)
    print(f"\nskipped (CDK-provided, not Python): {listed}")
    pytest.skip(f"{len(others)} CDK-provided non-Python functions not checked: {listed}")


# --------------------------------------------------------------------------- the check itself, on synthetic code


def _function(code_dir: Path, handler: str, *, layers: tuple[str, ...] = (), **environment: str) -> Function:
    return Function(
        stack="unit",
        logical_id="Fn",
        package_type="Zip",
        runtime="python3.13",
        handler=handler,
        code_dir=code_dir,
        layers=layers,
        environment=environment,
        architecture="x86_64",
        function_name="unit-fn",
        region="eu-west-1",
        tracing=True,
    )


def _code(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


POWERTOOLS_HANDLER = {
    "app/__init__.py": "",
    "app/handler.py": (
        "import boto3\nfrom aws_lambda_powertools import Logger, Tracer\n"
        "logger = Logger()\ntracer = Tracer()\n\ndef handler(event, context):\n    return {}\n"
    ),
}


def test_a_function_importing_powertools_without_the_layer_fails(tmp_path: Path, environments: Environments) -> None:
    code = _code(tmp_path, POWERTOOLS_HANDLER)
    result = check_zip_function(_function(code, "app.handler.handler"), environments)
    assert not result.ok
    assert "No module named 'aws_lambda_powertools'" in result.problems[0]


def test_the_same_function_with_the_powertools_layer_passes(tmp_path: Path, environments: Environments) -> None:
    code = _code(tmp_path, POWERTOOLS_HANDLER)
    result = check_zip_function(_function(code, "app.handler.handler", layers=(POWERTOOLS,)), environments)
    assert result.ok, result


def test_only_the_sdk_comes_with_the_runtime(tmp_path: Path, environments: Environments) -> None:
    # requests and yaml are installed in .venv, but neither the runtime nor the Powertools layer has them.
    code = _code(tmp_path, {"fn.py": "import yaml\n\ndef handler(event, context):\n    return {}\n"})
    result = check_zip_function(_function(code, "fn.handler", layers=(POWERTOOLS,)), environments)
    assert "No module named 'yaml'" in result.problems[0]


@pytest.mark.parametrize(
    ("arn", "message"),
    [
        (POWERTOOLS.replace(":27", ":99"), "layer version 99"),
        ("arn:aws:lambda:eu-west-1:123456789012:layer:OurLayer:1", "is not described"),
        (POWERTOOLS.replace("python313", "python312"), "built for python312/x86_64"),
    ],
)
def test_a_layer_the_test_does_not_know_fails_with_what_to_describe(
    arn: str, message: str, tmp_path: Path, environments: Environments
) -> None:
    code = _code(tmp_path, POWERTOOLS_HANDLER)
    result = check_zip_function(_function(code, "app.handler.handler", layers=(arn,)), environments)
    assert message in result.problems[0]


def test_environment_read_at_import_time_comes_from_the_template(tmp_path: Path, environments: Environments) -> None:
    code = _code(tmp_path, {"fn.py": "import os\nTABLE = os.environ['TABLE_NAME']\n\ndef handler(e, c):\n    pass\n"})
    assert check_zip_function(_function(code, "fn.handler", TABLE_NAME="placeholder-Table"), environments).ok
    missing = check_zip_function(_function(code, "fn.handler"), environments)
    assert "KeyError: 'TABLE_NAME'" in missing.problems[0]


@pytest.mark.parametrize(
    ("source", "message"),
    [("def other(e, c):\n    pass\n", "has no attribute 'handler'"), ("handler = 3\n", "is not callable")],
)
def test_the_handler_attribute_must_exist_and_be_callable(
    source: str, message: str, tmp_path: Path, environments: Environments
) -> None:
    code = _code(tmp_path, {"fn.py": source})
    assert message in check_zip_function(_function(code, "fn.handler"), environments).problems[0]


def test_a_stdlib_module_removed_in_the_runtimes_python_is_reported(tmp_path: Path, environments: Environments) -> None:
    code = _code(tmp_path, {"fn.py": "import cgi\n\ndef handler(e, c):\n    pass\n"})
    [problem] = check_zip_function(_function(code, "fn.handler"), environments).problems
    assert problem == "fn.py:1 imports cgi, removed from Python before python3.13"


IMAGE_HANDLER = {"app.py": "import numpy\nfrom aws_lambda_powertools import Logger\n\ndef handler(e, c):\n    pass\n"}
DOCKERFILE = (
    "FROM public.ecr.aws/lambda/python:3.13\n"
    "COPY requirements.txt ${LAMBDA_TASK_ROOT}/\n"
    'RUN pip install --no-cache-dir -r "${LAMBDA_TASK_ROOT}/requirements.txt"\n'
    "{copy}"
    'CMD ["app.handler"]\n'
)


def _image(code_dir: Path) -> Function:
    return dataclasses.replace(_function(code_dir, ""), package_type="Image", runtime=None, handler=None)


@pytest.mark.parametrize(
    ("requirements", "copy", "message"),
    [
        ("numpy==2.4.6\naws-lambda-powertools==3.37.0\n", "COPY app.py ${LAMBDA_TASK_ROOT}/\n", None),
        ("numpy==2.4.6\n", "COPY app.py ${LAMBDA_TASK_ROOT}/\n", "No module named 'aws_lambda_powertools'"),
        ("numpy==2.4.6\naws-lambda-powertools==3.37.0\n", "", "No module named 'app'"),
        ("numpy==1.0.0\n", "COPY app.py ${LAMBDA_TASK_ROOT}/\n", "the image pins numpy==1.0.0, .venv has 2.4.6"),
    ],
    ids=["complete", "requirement-missing", "handler-not-copied", "pin-not-modelled"],
)
def test_an_image_must_copy_its_handler_and_install_what_it_imports(
    requirements: str, copy: str, message: str | None, tmp_path: Path, environments: Environments
) -> None:
    dockerfile = DOCKERFILE.replace("{copy}", copy)
    context = _code(tmp_path / "context", {**IMAGE_HANDLER, "requirements.txt": requirements, "Dockerfile": dockerfile})
    result = check_image_function(_image(context), environments, ImageBuilds(tmp_path / "builds"))
    if message is None:
        assert result.ok, result
    else:
        assert any(message in problem for problem in result.problems), result.problems


def test_intrinsics_in_the_environment_become_placeholders() -> None:
    resolve = Placeholders(
        StackContext(name="dev/Inference", template=Path("t.json"), account="1", region="eu-west-1")
    ).resolve
    assert resolve({"Ref": "Topic"}) == "placeholder-Topic"
    assert resolve({"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":x"]]}) == "arn:aws:x"
    assert resolve({"Fn::Sub": "${AWS::Region}/${Name}"}) == "eu-west-1/placeholder-Name"
    assert resolve({"Fn::GetAtt": ["Table", "Arn"]}) == "placeholder-Table.Arn"

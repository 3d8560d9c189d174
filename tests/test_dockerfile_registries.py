"""No Dockerfile in the repository pulls from Docker Hub (issue 13 item 8).

The pipeline's Assets stage builds the images in CodeBuild, whose shared addresses make anonymous Docker Hub pulls
hit Docker Hub's rate limit. An image reference whose first component is not a registry host (no "." or ":" and not
"localhost") resolves to docker.io, so every image a build pulls must name its registry, and that registry must not
be Docker Hub: every FROM (after ARG substitution, stage names aside), COPY --from and RUN --mount from= that names
an image, and the `# syntax=` frontend ("Custom Dockerfile syntax", docs.docker.com/build/buildkit/frontend: the
frontend is itself an image pulled at build time). The ECR Public Gallery serves the Docker Official Images under
public.ecr.aws/docker/library/ and AWS's Lambda base images under public.ecr.aws/lambda/.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
DIRECTIVE = re.compile(r"#\s*syntax\s*=\s*(\S+)", re.I)
ARG = re.compile(r"ARG\s+(\w+)(?:=(\S*))?", re.I)


def dockerfiles() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return sorted(
        {
            ROOT / p
            for p in listed
            if re.fullmatch(r"(.*/)?(Dockerfile(\.[\w-]+)?|[\w.-]+\.Dockerfile)", p)
            and not p.endswith(".dockerignore")
            and (ROOT / p).is_file()
        }
    )


def _instructions(text: str) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _host_problem(reference: str) -> str | None:
    if reference == "scratch":
        return None
    first = reference.split("/", 1)[0]
    if "/" not in reference or not ("." in first or ":" in first or first == "localhost"):
        return "names no registry, so it is pulled from Docker Hub"
    if first.lower() in DOCKER_HUB:
        return "is on Docker Hub"
    return None


def image_problems(text: str) -> list[str]:
    """Every image reference in a Dockerfile that would be pulled from Docker Hub, with why."""
    problems, args, stages = [], {}, set()
    for line in text.splitlines():  # parser directives: only before the first instruction or other comment
        match = DIRECTIVE.fullmatch(line.strip())
        if not match:
            break
        if why := _host_problem(match.group(1)):
            problems.append(f"# syntax={match.group(1)} {why}")

    def expand(value: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value)

    def check(kind: str, reference: str) -> None:
        image = expand(reference)
        if image in stages or image.isdigit():
            return
        if "$" in image:
            problems.append(f"{kind} {reference}: an ARG without a default, cannot tell the registry")
        elif why := _host_problem(image):
            problems.append(f"{kind} {reference} ({image}) {why}")

    for instruction in _instructions(text):
        keyword, _, rest = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and (arg := ARG.match(instruction)) and arg.group(1) not in args:
            args[arg.group(1)] = arg.group(2) if arg.group(2) is not None else f"${arg.group(1)}"
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            check("FROM", words[0])
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
        elif keyword == "COPY":
            for source in re.findall(r"--from=(\S+)", rest):
                check("COPY --from", source)
        elif keyword == "RUN":
            for mount in re.findall(r"--mount=(\S+)", rest):
                for source in re.findall(r"(?:^|,)from=([^,]+)", mount):
                    check("RUN --mount from", source)
    return problems


def test_the_repository_has_dockerfiles_to_check() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in dockerfiles()}
    assert {"model_container/Dockerfile", "lambda_src/drift_monitor/Dockerfile"} <= names, names


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_image_comes_from_docker_hub(path: Path) -> None:
    problems = image_problems(path.read_text())
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# syntax=docker/dockerfile:1\nFROM public.ecr.aws/lambda/python:3.13\n", ["# syntax=docker/dockerfile:1"]),
        ("FROM python:3.11-slim\n", ["FROM python:3.11-slim"]),
        ("ARG BASE=python:3.11\nFROM ${BASE} AS build\n", ["FROM ${BASE} (python:3.11)"]),
        ("FROM docker.io/library/python:3.11\n", ["is on Docker Hub"]),
        ("FROM public.ecr.aws/docker/library/python:3.11 AS build\nFROM build\nCOPY --from=build /a /b\n", []),
        (
            "FROM public.ecr.aws/docker/library/python:3.11\nCOPY --from=busybox:1 /bin/sh /sh\n",
            ["COPY --from busybox:1"],
        ),
        (
            "FROM public.ecr.aws/docker/library/python:3.11\nRUN --mount=type=bind,from=alpine,target=/a true\n",
            ["RUN --mount from alpine"],
        ),
        ("ARG BASE\nFROM $BASE\n", ["ARG without a default"]),
        ("FROM --platform=linux/amd64 localhost:5000/python:3.11\n", []),
    ],
)
def test_the_check_finds_each_way_of_pulling_from_docker_hub(text: str, expected: list[str]) -> None:
    problems = image_problems(text)
    assert len(problems) == len(expected) and all(e in p for e, p in zip(expected, problems, strict=True)), problems

"""Every `cdk` command README.md shows selects what it says, checked against the synthesized app.

Stack selection is the CDK CLI's own: each pattern is passed to `cdk ls --app <the session's cloud assembly>`
(the CLI matches patterns against hierarchical stack ids such as `dev/Data` and adds the stacks they depend on,
as `cdk deploy` does without `--exclusively`). Why the rules below:
- The environments are Stages, so their stacks are not top-level ("Introduction to AWS CDK stages", AWS CDK v2
  Developer Guide, https://docs.aws.amazon.com/cdk/v2/guide/stages.html). Without a pattern the CLI's
  `deploy`/`destroy` stop with the message quoted in NO_SELECTOR, and `diff` compares only the top-level stacks:
  with `-c env=...` none, so it "succeeds" having compared nothing.
- A pattern that matches nothing makes `cdk deploy` fail with "No stacks match the name(s) ..." (and `cdk ls`
  print nothing), e.g. `mlapi-pipeline`, the CloudFormation name, where the id is `Pipeline`.
- `-c env=NAME` synthesizes only that environment (stacks/app_builder.py: no pipeline either), so a pattern of a
  command with `-c env=NAME` must select stacks of NAME only.
- An unquoted `*` is expanded by the shell before the CLI sees it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from tests.infra.conftest import Synthesized

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CDK = ROOT / "node_modules" / ".bin" / "cdk"
# The CLI's words (aws-cdk, toolkit-lib stack-assembly: multipleStacksWithoutSelectorMessage).
NO_SELECTOR = (
    "Since this app includes more than a single stack, specify which stacks to use (wildcards are supported) "
    "or specify `--all`"
)
STACK_COMMANDS = {"deploy", "diff", "destroy"}
SELECTING = STACK_COMMANDS | {"synth", "synthesize", "ls", "list"}
VALUE_OPTIONS = {
    "-c", "--context", "--profile", "-a", "--app", "--require-approval", "--trust", "--trust-for-lookup",
    "--cloudformation-execution-policies", "--qualifier", "--toolkit-stack-name", "-O", "--outputs-file",
    "--concurrency", "-m", "--method", "--parameters", "-t", "--tags", "-r", "--role-arn", "-o", "--output",
}  # fmt: skip
FLAG_OPTIONS = {
    "--all", "-e", "--exclusively", "-f", "--force", "--hotswap", "--no-rollback", "-j", "--json", "-l", "--long",
    "-q", "--quiet", "-v", "--verbose", "--strict", "--fail", "--no-notices", "--no-execute", "-d",
    "--show-dependencies",
}  # fmt: skip
CDK_PREFIX = re.compile(r"^(?:\$\s+)?(?:npx\s+(?:aws-)?cdk|cdk)\s")
# Inline code in prose names a command only when it is written to be typed (`npx cdk ...`); a bare `cdk deploy`
# in a sentence refers to the CLI command, not to a command line.
INLINE_PREFIX = re.compile(r"^npx\s+(?:aws-)?cdk\s")


@dataclass
class Command:
    """One `cdk` command as the README writes it, split into what the CLI would see."""

    text: str
    subcommand: str = ""
    patterns: list[str] = field(default_factory=list)
    options: dict[str, list[str]] = field(default_factory=dict)
    unquoted_globs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def environments(self) -> set[str] | None:
        """The environments `-c env=...` selects; None when the command synthesizes the whole app."""
        for value in self.options.get("-c", []) + self.options.get("--context", []):
            key, _, names = value.partition("=")
            if key == "env":
                return {name.strip() for name in names.split(",") if name.strip()}
        return None


def _logical_lines(block: str) -> list[str]:
    return block.replace("\\\n", " ").splitlines()


def readme_commands(text: str) -> list[Command]:
    """Every `cdk`/`npx cdk` command line in the README's fenced code blocks, and `npx cdk` in inline code."""
    fenced = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
    lines = [line.strip() for block in fenced.findall(text) for line in _logical_lines(block)]
    spans = [span.strip() for span in re.findall(r"`([^`\n]+)`", fenced.sub("", text))]
    return [parse(line) for line in lines if CDK_PREFIX.match(line)] + [
        parse(span) for span in spans if INLINE_PREFIX.match(span)
    ]


def parse(line: str) -> Command:
    command = Command(text=line)
    # A prompt is not typed; a shell substitution is one argument to the CLI; comments are not arguments.
    shell = re.sub(r"\$\([^)]*\)", "SUBSTITUTED", re.sub(r"^\$\s+", "", line))
    raw = shlex.split(shell, comments=True, posix=False)
    words = shlex.split(shell, comments=True)
    command.unquoted_globs = [word for word in raw if "*" in word and word[0] not in "'\""]
    words = words[2:] if words[0] == "npx" else words[1:]
    index = 0
    while index < len(words):
        word = words[index]
        name, has_value, value = word.partition("=")
        if name in VALUE_OPTIONS:
            if not has_value:
                index += 1
                value = words[index] if index < len(words) else ""
            command.options.setdefault(name, []).append(value)
        elif word in FLAG_OPTIONS:
            command.options.setdefault(word, [])
        elif word.startswith("-"):
            command.problems.append(f"option {word} is unknown to this test (add it to VALUE_OPTIONS/FLAG_OPTIONS)")
        elif not command.subcommand:
            command.subcommand = word
        else:
            command.patterns.append(word)
        index += 1
    return command


@cache
def listed(assembly: Path, pattern: str) -> tuple[str, ...]:
    """The hierarchical ids `cdk ls` selects for one pattern (with the stacks they depend on)."""
    env = {**os.environ, "CDK_DISABLE_VERSION_CHECK": "true", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
    result = subprocess.run(
        [str(CDK), "ls", "--no-notices", "--app", str(assembly), pattern],
        cwd=assembly.parent,  # not the repository: its cdk.json is not what is being checked
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"cdk ls {pattern!r} failed: {result.stderr}"
    return tuple(line.split(" (")[0] for line in result.stdout.splitlines() if line.strip())


def problems(command: Command, assembly: Path) -> list[str]:
    """Why the command does not do what the README says it does (empty when it does)."""
    if command.subcommand == "bootstrap":
        return [*command.problems, *bootstrap_problems(command)]
    if command.subcommand not in SELECTING:
        return [*command.problems, f"`cdk {command.subcommand}` is not a command this test knows how to check"]
    return [*command.problems, *selector_problems(command), *selection_problems(command, assembly)]


def bootstrap_problems(command: Command) -> list[str]:
    pattern = r"aws://[\w<>-]+/[\w<>-]+"
    return [
        f"{target!r} is not aws://ACCOUNT/REGION" for target in command.patterns if not re.fullmatch(pattern, target)
    ]


def selector_problems(command: Command) -> list[str]:
    found = []
    if command.unquoted_globs:
        found.append(f"quote {', '.join(command.unquoted_globs)}: the shell expands an unquoted *")
    if command.subcommand in STACK_COMMANDS and "--all" in command.options:
        found.append("--all: name the stacks (--all deploys every environment and the pipeline at once)")
    elif command.subcommand in STACK_COMMANDS and not command.patterns:
        found.append(f"names no stacks; the CDK CLI says: {NO_SELECTOR}")
    return found


def selection_problems(command: Command, assembly: Path) -> list[str]:
    found = []
    envs = command.environments
    for pattern in command.patterns:
        selected = listed(assembly, pattern)
        if not selected:
            found.append(f"{pattern!r} selects no stack (the ids are {', '.join(listed(assembly, '**'))})")
            continue
        outside = [stack for stack in selected if envs is not None and stack.split("/")[0] not in envs]
        if outside:
            found.append(
                f"{pattern!r} selects {', '.join(outside)}, which -c env={','.join(sorted(envs or ()))} does not "
                "synthesize"
            )
    return found


COMMANDS = readme_commands(README.read_text())


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c.text.split()) for c in COMMANDS])
def test_readme_command_selects_what_it_says(command: Command, synthesized: Synthesized) -> None:
    assert problems(command, synthesized.outdir) == [], command.text


def test_readme_shows_a_dev_deploy_a_dev_diff_and_the_pipeline_deploy() -> None:
    shown = {(c.subcommand, frozenset(c.environments or ()), tuple(c.patterns)) for c in COMMANDS}
    assert ("deploy", frozenset({"dev"}), ("dev/*",)) in shown
    assert ("diff", frozenset({"dev"}), ("dev/*",)) in shown
    assert ("deploy", frozenset(), ("Pipeline",)) in shown


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("npx cdk deploy mlapi-pipeline", "'mlapi-pipeline' selects no stack"),
        ("npx cdk deploy -c env=prod", "specify which stacks to use"),
        ("npx cdk diff -c env=dev", "specify which stacks to use"),
        ("npx cdk destroy --all", "name the stacks"),
        ("npx cdk deploy -c env=dev 'prod/*'", "which -c env=dev does not synthesize"),
        ("npx cdk deploy -c env=dev Pipeline", "Pipeline, which -c env=dev does not synthesize"),
        ("npx cdk deploy -c env=dev dev/*", "the shell expands an unquoted *"),
        ("npx cdk deploy --colour 'dev/*'", "option --colour is unknown"),
        ("npx cdk bootstrap 111111111111/eu-west-1", "is not aws://ACCOUNT/REGION"),
    ],
)
def test_the_check_rejects_commands_that_select_nothing_or_the_wrong_stacks(
    text: str, expected: str, synthesized: Synthesized
) -> None:
    assert any(expected in problem for problem in problems(parse(text), synthesized.outdir))


def test_the_check_accepts_dependencies_and_commas() -> None:
    command = parse(
        "npx cdk deploy -c env=dev,staging --require-approval never 'staging/*' -c commit=$(git rev-parse HEAD)"
    )
    assert command.environments == {"dev", "staging"}
    assert command.patterns == ["staging/*"] and command.options["--require-approval"] == ["never"]
    assert not command.problems and not command.unquoted_globs

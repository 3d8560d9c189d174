"""Security review of a synthesized cloud assembly: nag packs, checkov, cfn-lint, IAM, encryption, logs, network.

    python scripts/security_report.py [--cloud-assembly cdk.out] [--out reports/] [--no-checkov] [--no-cfn-lint]

Writes `<out>/security.md` (for reviewers) and `<out>/security.json` (for tests and tooling). Offline: it reads
the templates, the stack metadata files and `validation-report.json`, the installed cdk_nag package, and runs
checkov (if installed, see `find_checkov`) and cfn-lint locally. Exit status 1 when anything fails: a nag
finding, a checkov or cfn-lint failure, an IAM wildcard violation, not exactly one internet path to the model
per environment, or more acknowledgements than `docs/acknowledgement-budget.json` allows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/security_report.py`
    sys.path.insert(0, str(ROOT))

from scripts.security_report_iam import STAR_ACTIONS_NEEDING_CONDITION, STAR_ONLY_ACTIONS, iam_review  # noqa: E402
from scripts.security_report_infra import Env, encryption, internet_paths, log_destinations  # noqa: E402
from scripts.security_report_nag import PACKS, budget_pairs, failed_findings, stack_nag_section  # noqa: E402
from scripts.synth_summary import stack_templates  # noqa: E402

CHECKOV_CONFIG = ROOT / ".checkov.yaml"
CFN_LINT_CONFIG = ROOT / ".cfnlintrc.yaml"
BUDGET_FILE = ROOT / "docs" / "acknowledgement-budget.json"


# ---------------------------------------------------------------- scanners


def find_checkov() -> str | None:
    """$CHECKOV, then checkov next to this Python, then the tool venv `make security-report` creates, then PATH.

    checkov pins boto3/botocore versions that conflict with the project's, so it lives in its own venv
    (`.venv/tools/checkov`).
    """
    candidates = [
        os.environ.get("CHECKOV", ""),
        str(Path(sys.executable).parent / "checkov"),
        str(ROOT / ".venv" / "tools" / "checkov" / "bin" / "checkov"),
        shutil.which("checkov") or "",
    ]
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


def checkov_skips(config: Path = CHECKOV_CONFIG) -> dict[str, str]:
    """check id -> reason, from the `skip-check` list of .checkov.yaml (the reason is the line's comment)."""
    skips: dict[str, str] = {}
    in_list = False
    for line in config.read_text().splitlines() if config.exists() else []:
        if re.match(r"^skip-check\s*:", line):
            in_list = True
            continue
        if in_list and re.match(r"^\S", line):
            in_list = False
        match = re.match(r"^\s*-\s*(?P<id>[A-Z0-9_]+)\s*(#\s*(?P<reason>.*))?$", line) if in_list else None
        if match:
            skips[match.group("id")] = (match.group("reason") or "").strip()
    return skips


def run_checkov(cloud_assembly: Path, checkov: str | None = None) -> dict[str, Any]:
    checkov = checkov or find_checkov()
    skips = [{"check_id": k, "reason": v} for k, v in checkov_skips().items()]
    if checkov is None:
        return {"ran": False, "reason": "checkov not installed (see find_checkov)", "skipped": skips}
    command = [
        checkov,
        "-d",
        str(cloud_assembly),
        "--framework",
        "cloudformation",
        "-o",
        "json",
        "--quiet",
        "--compact",
        "--skip-download",  # offline: no policy/guideline download from the Prisma Cloud API
    ]
    if CHECKOV_CONFIG.exists():
        command += ["--config-file", str(CHECKOV_CONFIG)]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env, cwd=ROOT)
    try:
        output = json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        return {"ran": False, "reason": f"checkov output unreadable: {result.stderr[-2000:]}", "skipped": skips}
    reports = output if isinstance(output, list) else [output]
    failed, passed, version = [], 0, ""
    for report in reports:
        if not isinstance(report, dict):
            continue
        summary = report.get("summary", {})
        passed += summary.get("passed", 0)
        version = summary.get("checkov_version", version)
        for check in report.get("results", {}).get("failed_checks", []):
            failed.append(
                {
                    "check_id": check.get("check_id"),
                    "check_name": check.get("check_name"),
                    "file": check.get("file_path", "").lstrip("/"),
                    "resource": check.get("resource"),
                    "guideline": check.get("guideline"),
                }
            )
        for check in report.get("results", {}).get("skipped_checks", []):  # inline skips in the templates
            skips.append(
                {
                    "check_id": check.get("check_id"),
                    "reason": check.get("check_result", {}).get("suppress_comment", ""),
                    "resource": check.get("resource"),
                }
            )
    return {
        "ran": True,
        "version": version,
        "passed": passed,
        "failed": failed,
        "skipped": skips,
        "exit_code": result.returncode,
    }


def run_cfn_lint(templates: list[Path]) -> dict[str, Any]:
    executable = Path(sys.executable).parent / "cfn-lint"
    if not executable.exists():
        found = shutil.which("cfn-lint")
        if not found:
            return {"ran": False, "reason": "cfn-lint not installed"}
        executable = Path(found)
    command = [str(executable), "--format", "json"]
    if CFN_LINT_CONFIG.exists():
        command += ["--config-file", str(CFN_LINT_CONFIG)]
    result = subprocess.run([*command, *map(str, templates)], capture_output=True, text=True, check=False, cwd=ROOT)
    try:
        matches = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        return {"ran": False, "reason": f"cfn-lint output unreadable: {result.stderr[-2000:]}"}
    ignored = []
    if CFN_LINT_CONFIG.exists():
        ignored = re.findall(r"^\s*-\s*([EWI]\d+)\s*(?:#\s*(.*))?$", CFN_LINT_CONFIG.read_text(), re.M)
    return {
        "ran": True,
        "templates": len(templates),
        "findings": [
            {
                "rule": m.get("Rule", {}).get("Id"),
                "level": m.get("Level"),
                "message": m.get("Message"),
                "file": Path(m.get("Filename", "")).name,
            }
            for m in matches
        ],
        "ignored": [{"rule": rule, "reason": reason} for rule, reason in ignored],
    }


# ---------------------------------------------------------------- report


def load_budget(path: Path = BUDGET_FILE) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {"environments": {}}


def build_report(
    cloud_assembly: Path,
    *,
    checkov: bool = True,
    cfn_lint: bool = True,
    checkov_result: dict[str, Any] | None = None,
) -> dict[str, Any]:
    stacks = stack_templates(cloud_assembly)
    if not stacks:
        raise SystemExit(f"no stack templates under {cloud_assembly} (run `npx cdk synth` first)")
    missing_paths = [name for name, path in stacks if '"aws:cdk:path"' not in path.read_text()]
    if missing_paths:
        raise SystemExit(
            f"no construct paths in {missing_paths}: synthesize with path metadata (the CDK CLI's default; "
            "in-process, App(context={'aws:cdk:enable-path-metadata': True, ...}))"
        )
    failures = failed_findings(cloud_assembly)
    by_env: dict[str, dict[str, tuple[Path, dict[str, Any]]]] = defaultdict(dict)
    for name, template_path in stacks:
        env_key = (
            template_path.parent.name.removeprefix("assembly-") if template_path.parent != cloud_assembly else "app"
        )
        by_env[env_key][name] = (template_path, json.loads(template_path.read_text()))

    environments: list[dict[str, Any]] = []
    order = ["dev", "staging", "prod"]
    for env_name in sorted(by_env, key=lambda e: (order.index(e) if e in order else len(order), e)):
        env = Env(env_name, {name: template for name, (_, template) in by_env[env_name].items()})
        stack_sections = []
        for name, (template_path, template) in by_env[env_name].items():
            stack_sections.append(
                {
                    "stack": name,
                    "template": str(template_path.relative_to(cloud_assembly)),
                    "resources": len(template.get("Resources", {})),
                    "nag": stack_nag_section(name, template_path, template, failures),
                    "iam": iam_review(template),
                }
            )
        environments.append(
            {
                "env": env_name,
                "stacks": stack_sections,
                "encryption": encryption(env),
                "logs": log_destinations(env),
                "network": internet_paths(env),
            }
        )

    budget = load_budget()
    pairs = budget_pairs([{"env": e["env"], "nag": s["nag"]} for e in environments for s in e["stacks"]])
    acknowledgement_budget = {
        e["env"]: {
            "actual": len(pairs.get(e["env"], set())),
            "budget": budget.get("environments", {}).get(e["env"]),
        }
        for e in environments
    }
    templates = [path for _, path in stacks]
    report = {
        "cloud_assembly": str(cloud_assembly),
        "packs": list(PACKS),
        "environments": environments,
        "nag_failed_findings": failures,
        "acknowledgement_budget": acknowledgement_budget,
        "iam_policy": {
            "star_only_actions": list(STAR_ONLY_ACTIONS),
            "star_actions_needing_condition": {k: list(v) for k, v in STAR_ACTIONS_NEEDING_CONDITION.items()},
        },
        "checkov": checkov_result
        or (run_checkov(cloud_assembly) if checkov else {"ran": False, "reason": "--no-checkov"}),
        "cfn_lint": run_cfn_lint(templates) if cfn_lint else {"ran": False, "reason": "--no-cfn-lint"},
    }
    report["headline"] = headline(report)
    return report


def headline(report: dict[str, Any]) -> dict[str, Any]:
    environments = report["environments"]
    roles = [role for e in environments for s in e["stacks"] for role in s["iam"]]
    over_budget = {
        env: figures
        for env, figures in report["acknowledgement_budget"].items()
        if figures["budget"] is None or figures["actual"] > figures["budget"]
    }
    checkov = report["checkov"]
    return {
        "environments": len(environments),
        "stacks": sum(len(e["stacks"]) for e in environments),
        "nag_failed": len(report["nag_failed_findings"]),
        "acknowledgements_per_env": {env: f["actual"] for env, f in report["acknowledgement_budget"].items()},
        "acknowledgements_over_budget": over_budget,
        "roles": len(roles),
        "iam_violations": sum(len(r["violations"]) for r in roles),
        "model_paths_per_env": {e["env"]: len(e["network"]["model_paths"]) for e in environments},
        "other_entry_points": sum(len(e["network"]["other_entry_points"]) for e in environments),
        "path_problems": sum(len(p["problems"]) for e in environments for p in e["network"]["model_paths"]),
        "checkov_failed": len(checkov.get("failed", [])) if checkov.get("ran") else None,
        "checkov_skipped_checks": len(checkov.get("skipped", [])),
        "cfn_lint_findings": len(report["cfn_lint"].get("findings", [])) if report["cfn_lint"].get("ran") else None,
        "unencrypted_stores": sum(1 for e in environments for row in e["encryption"] if row["key"] in ("NONE", "")),
        "logs_without_retention": sum(1 for e in environments for g in e["logs"] if not g["retention_days"]),
    }


def failed(report: dict[str, Any]) -> list[str]:
    h = report["headline"]
    reasons = []
    if h["nag_failed"]:
        reasons.append(f"{h['nag_failed']} failed nag findings")
    if h["acknowledgements_over_budget"]:
        reasons.append(f"acknowledgements over budget: {h['acknowledgements_over_budget']}")
    if h["iam_violations"]:
        reasons.append(f"{h['iam_violations']} IAM wildcard/PassRole violations")
    expected = {e["env"]: int(e["network"]["serves_model"]) for e in report["environments"]}
    if h["model_paths_per_env"] != expected or h["other_entry_points"] or h["path_problems"]:
        reasons.append("not exactly one clean internet path to the model per environment")
    if h["checkov_failed"]:
        reasons.append(f"{h['checkov_failed']} failed checkov checks")
    if h["cfn_lint_findings"]:
        reasons.append(f"{h['cfn_lint_findings']} cfn-lint findings")
    return reasons


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: dict[str, Any]) -> str:
    h = report["headline"]
    out = [
        "# Security report",
        "",
        f"Generated by `scripts/security_report.py` from `{report['cloud_assembly']}`"
        " (synthesized templates, offline).",
        "",
        "## Headline",
        "",
        "| figure | value |",
        "| --- | --- |",
    ]
    out += [f"| {k.replace('_', ' ')} | {_cell(v)} |" for k, v in h.items()]
    problems = failed(report)
    out += ["", f"**Result: {'FAIL — ' + '; '.join(problems) if problems else 'PASS'}**", ""]

    out += [
        "## cdk-nag packs",
        "",
        "cdk-nag v3 reports failures only. The rules of each pack are read from the installed cdk_nag package"
        " (its pack and rule sources); every rule is evaluated against every resource. *Applicable* = rules whose"
        " resource type occurs in the stack; *failed* = rules in `validation-report.json`; *acknowledged* = rules"
        " with an acknowledgement on some resource of the stack; **passed = applicable - failed - acknowledged**"
        " (a rule acknowledged on one resource and compliant on the others counts as acknowledged).",
        "",
    ]
    for env in report["environments"]:
        out += [
            f"### {env['env']}",
            "",
            "| stack | pack | rules in pack | applicable | passed | acknowledged | failed |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for stack in env["stacks"]:
            for pack, p in stack["nag"]["packs"].items():
                out.append(
                    f"| {stack['stack']} | {pack} | {p['rules_in_pack']} | {p['applicable']} | {len(p['passed'])}"
                    f" | {len(p['acknowledged_rules'])} | {len(p['failed'])} |"
                )
        out += ["", f"Acknowledgements in {env['env']} (rule, where it was made, reason, resources it covers):", ""]
        out += ["| pack | rule | construct | reason | covers |", "| --- | --- | --- | --- | --- |"]
        for stack in env["stacks"]:
            for pack, p in stack["nag"]["packs"].items():
                for ack in p["acknowledged"]:
                    out.append(
                        f"| {pack} | `{_cell(ack['rule_id'])}` | `{ack['construct_path']}` | {_cell(ack['reason'])}"
                        f" | {len(ack['resources'])} |"
                    )
        cdk_own = [a for s in env["stacks"] for a in s["nag"]["cdk_acknowledgements"]]
        if cdk_own:
            out += ["", "Written by CDK itself (not counted in the budget):", ""]
            out += [f"- `{a['rule_id']}` on `{a['construct_path']}`: {_cell(a['reason'])}" for a in cdk_own]
        out.append("")
    if report["nag_failed_findings"]:
        out += ["### Failed nag findings", "", "| pack | rule | construct |", "| --- | --- | --- |"]
        out += [
            f"| {f['pack']} | `{_cell(f['rule_id'])}` | `{f['construct_path']}` |"
            for f in report["nag_failed_findings"]
        ]
        out.append("")

    out += [
        "## Acknowledgement budget",
        "",
        "Distinct (construct, rule) acknowledgements per environment against `docs/acknowledgement-budget.json`.",
        "",
    ]
    out += ["| env | actual | budget |", "| --- | ---: | ---: |"]
    out += [f"| {env} | {f['actual']} | {f['budget']} |" for env, f in report["acknowledgement_budget"].items()]
    out.append("")

    checkov = report["checkov"]
    out += ["## checkov", ""]
    if checkov.get("ran"):
        out += [f"checkov {checkov['version']}: {checkov['passed']} passed, {len(checkov['failed'])} failed.", ""]
        if checkov["failed"]:
            out += ["| check | name | resource | file |", "| --- | --- | --- | --- |"]
            out += [
                f"| {f['check_id']} | {_cell(f['check_name'])} | `{f['resource']}` | {f['file']} |"
                for f in checkov["failed"]
            ]
            out.append("")
    else:
        out += [f"Not run: {checkov.get('reason')}.", ""]
    out += ["Skipped checks (`.checkov.yaml`):", "", "| check | reason |", "| --- | --- |"]
    out += [f"| {s['check_id']} | {_cell(s['reason'])} |" for s in checkov.get("skipped", [])]
    out.append("")

    lint = report["cfn_lint"]
    out += ["## cfn-lint", ""]
    if lint.get("ran"):
        out += [f"{lint['templates']} templates, {len(lint['findings'])} findings."]
        out += [f"- {f['level']} {f['rule']} {f['file']}: {_cell(f['message'])}" for f in lint["findings"]]
        out += [f"- ignored {i['rule']}: {i['reason']}" for i in lint["ignored"]]
    else:
        out.append(f"Not run: {lint.get('reason')}.")
    out.append("")

    out += [
        "## IAM review",
        "",
        "Every role, who may assume it, and what its policies allow (inline, `AWS::IAM::Policy` and customer-managed"
        " policies attached via `Roles` or `ManagedPolicyArns`). `*` is accepted only for: "
        + ", ".join(f"`{a}`" for a in report["iam_policy"]["star_only_actions"])
        + "; and with a condition for: "
        + ", ".join(
            f"`{a}` ({', '.join(k)})" for a, k in report["iam_policy"]["star_actions_needing_condition"].items()
        )
        + ". `iam:PassRole` needs a specific resource and a condition.",
        "",
    ]
    for env in report["environments"]:
        out += [f"### {env['env']}", ""]
        for stack in env["stacks"]:
            for role in stack["iam"]:
                principals = sorted({p for t in role["trust"] for p in t["principals"]})
                out += [f"#### `{role['path']}`", "", f"Assumed by: {', '.join(principals) or 'nobody'}", ""]
                if role["violations"]:
                    out += [f"- **VIOLATION** {_cell(v)}" for v in role["violations"]] + [""]
                out += [
                    "| policy | kind | effect | actions | resources | condition |",
                    "| --- | --- | --- | --- | --- | --- |",
                ]
                for policy in role["policies"]:
                    if not policy["statements"]:
                        out.append(
                            f"| {policy['name']} | {policy['kind']} | |"
                            f" (contents not in the template: {_cell(policy.get('arn', ''))}) | | |"
                        )
                    for s in policy["statements"]:
                        out.append(
                            f"| {policy['name']} | {policy['kind']} | {s['effect']}"
                            f" | {_cell(', '.join(s['actions'] or s['not_actions']))}"
                            f" | {_cell(', '.join(s['resources'] or s['not_resources']))}"
                            f" | {_cell(s['condition']) if s['condition'] else ''} |"
                        )
                out.append("")

    out += ["## Encryption", ""]
    for env in report["environments"]:
        out += [f"### {env['env']}", "", "| store | construct | name | key |", "| --- | --- | --- | --- |"]
        out += [f"| {r['type']} | `{r['path']}` | {_cell(r['name'])} | {_cell(r['key'])} |" for r in env["encryption"]]
        out.append("")

    out += [
        "## Log destinations",
        "",
        "Declared log groups and buckets, plus log groups a service creates on its own at run time (declared = no):"
        " those have no retention (never expire) and no customer-managed key unless created in the stack.",
        "",
    ]
    for env in report["environments"]:
        out += [
            f"### {env['env']}",
            "",
            "| destination | kind | declared | retention (days) | key | written by |",
            "| --- | --- | --- | ---: | --- | --- |",
        ]
        out += [
            f"| {_cell(g['destination'])} | {g['kind']} | {'yes' if g['declared'] else 'no'}"
            f" | {g['retention_days'] or 'never expires'}"
            f" | {_cell(g['key'])} | {_cell('; '.join(g['writers']) or '(nothing in the templates)')} |"
            for g in env["logs"]
        ]
        out.append("")

    out += [
        "## Network paths from the internet",
        "",
        "Derived from the templates: non-private REST APIs, their stages and WAF associations, methods with an AWS"
        " integration to `runtime.sagemaker` and the endpoint's subnets (route tables, public IPs); plus any other"
        " internet-facing resource type (function URLs, HTTP APIs, CloudFront, load balancers, internet gateways,"
        " elastic IPs, public subnets, Lambda permissions for any principal)."
        " Expected: exactly one path per environment that serves the model.",
        "",
    ]
    for env in report["environments"]:
        net = env["network"]
        out += [
            f"### {env['env']}: {len(net['model_paths'])} path(s) to the model,"
            f" {len(net['other_entry_points'])} other entry point(s)",
            "",
        ]
        for p in net["model_paths"]:
            out += [
                f"1. {p['summary']}",
                f"   - authorization: {p['authorization']};"
                f" subnets: {', '.join(f'`{s}`' for s in p['endpoint_subnets'])}",
            ]
            out += [f"   - **PROBLEM** {pr}" for pr in p["problems"]]
        out += [f"- **OTHER ENTRY POINT** {_cell(o)}" for o in net["other_entry_points"]]
        out.append("")
    return "\n".join(out) + "\n"


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    markdown, data = out / "security.md", out / "security.json"
    markdown.write_text(to_markdown(report))
    data.write_text(json.dumps(report, indent=1, sort_keys=False, default=str) + "\n")
    return markdown, data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cloud-assembly", type=Path, default=Path("cdk.out"))
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument(
        "--no-checkov", action="store_true", help="skip checkov (slow; also skipped when not installed)"
    )
    parser.add_argument("--no-cfn-lint", action="store_true")
    args = parser.parse_args(argv)
    report = build_report(args.cloud_assembly, checkov=not args.no_checkov, cfn_lint=not args.no_cfn_lint)
    markdown, data = write_report(report, args.out)
    for key, value in report["headline"].items():
        print(f"{key.replace('_', ' '):<32}{value}")
    problems = failed(report)
    print(f"wrote {markdown} and {data}: {'FAIL: ' + '; '.join(problems) if problems else 'PASS'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Print what `cdk synth` produced: stacks, resources, acknowledged and failed nag findings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scripts.security_report_nag import CDK_OWN_PREFIX, acknowledgements_from_metadata


def stack_templates(cloud_assembly: Path) -> list[tuple[str, Path]]:
    """(stack name, template path) of every stack in the assembly and its nested stage assemblies."""
    found = []
    for manifest in sorted(cloud_assembly.glob("**/manifest.json")):
        for artifact in json.loads(manifest.read_text())["artifacts"].values():
            if artifact["type"] == "aws:cloudformation:stack":
                template = manifest.parent / artifact["properties"]["templateFile"]
                found.append((artifact.get("displayName", template.stem), template))
    return found


def summarize(cloud_assembly: Path) -> dict:
    stacks = []
    for name, template_path in stack_templates(cloud_assembly):
        resources = json.loads(template_path.read_text()).get("Resources", {})
        metadata = template_path.with_name(template_path.name.replace(".template.json", ".metadata.json"))
        acknowledged = len(
            {
                (a.construct_path, a.rule_id)
                for a in acknowledgements_from_metadata(metadata)
                if not a.rule_id.startswith(CDK_OWN_PREFIX)
            }
        )
        stacks.append({"stack": name, "resources": len(resources), "acknowledged": acknowledged})
    report = json.loads((cloud_assembly / "validation-report.json").read_text())
    failed = sum(
        len(violation["violatingConstructs"])
        for plugin in report.get("pluginReports", [])
        for violation in plugin.get("violations", [])
    )
    return {"stacks": stacks, "failed_findings": failed}


def main(argv: list[str]) -> int:
    cloud_assembly = Path(argv[1] if len(argv) > 1 else "cdk.out")
    summary = summarize(cloud_assembly)
    # Acknowledgements are counted where they were made: distinct (construct, rule) pairs.
    print(f"{'stack':<28}{'resources':>10}{'acknowledged':>14}")
    for row in summary["stacks"]:
        print(f"{row['stack']:<28}{row['resources']:>10}{row['acknowledged']:>14}")
    total_resources = sum(row["resources"] for row in summary["stacks"])
    total_acks = sum(row["acknowledged"] for row in summary["stacks"])
    print(
        f"{len(summary['stacks'])} stacks, {total_resources} resources, "
        f"{total_acks} acknowledged nag findings, {summary['failed_findings']} failed nag findings"
    )
    return 1 if summary["failed_findings"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

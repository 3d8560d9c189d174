"""parliament lints every IAM policy document of every synthesized template: 0 findings but documented ones.

Which documents (`POLICY_LOCATIONS`): identity policies (`AWS::IAM::Policy`, `AWS::IAM::ManagedPolicy`, the inline
`Policies` of roles, users and groups) and resource policies (S3 bucket, SNS topic, SQS queue, KMS key, VPC endpoint,
ECR repository, CloudWatch Logs and Secrets Manager resource policies, and role trust policies), in every stack of
the cloud assembly, the pipeline's nested staging/prod stage assemblies included. A guard test fails when a template
holds a policy-shaped property (`{"Statement": ...}`) that the table does not cover.

parliament has no separate resource-policy mode: `analyze_policy_string` reads `Principal`/`NotPrincipal` and checks
them (`Statement._check_principal`), and matches actions to resources the same way for both kinds. Two kinds of
resource policy need the resource they are attached to made explicit, so that parliament checks action/resource
matching instead of reporting `Resource: "*"`:
- a KMS key policy's `"*"` means "this KMS key" (AWS KMS Developer Guide, "Creating a key policy", Resource): it is
  replaced by the key's ARN;
- a role trust policy has no `Resource` element (it is the role's resource policy, IAM User Guide, "Roles terms and
  concepts" — trust policy), which parliament cannot lint: the role's ARN is added.

Before linting, CloudFormation intrinsics are resolved (tests/infra/cfn_resolve.py) for account 123456789012, region
eu-west-1, partition aws; numbers in condition values are written as strings (IAM takes either form: AWS's own TLS
examples write `"s3:TlsVersion": 1.2` and `"1.2"`; parliament's type check raises TypeError on a JSON number).

parliament's community auditors are not run: they inventory capabilities (any grant of kms:CreateGrant,
sts:AssumeRole, ...) rather than report errors, and would need allow-listing by intent.

The allow-list (iam_lint_false_positives.json) matches each finding by issue code, the action it is about (and the
action as written in the statement), the condition key, the statement's resources and the policy: anything else
fails. Each entry has its reason; entries with `"real": true` are defects still to fix: each has an xfail(strict)
test that turns into a failure once the fix removes the finding, so that the entry is deleted with the fix. An entry
that matches nothing fails the suite too.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from parliament import analyze_policy_string, enhance_finding

from tests.infra.cfn_resolve import Resolver, Stack, UnresolvableError, load_assembly

ALLOW_LIST_FILE = Path(__file__).with_name("iam_lint_false_positives.json")
ALLOW_LIST: list[dict[str, Any]] = json.loads(ALLOW_LIST_FILE.read_text())["entries"]
ENTRY_FIELDS = {
    "id", "issue", "actions", "written", "condition", "resource", "policy", "policy_type",
    "effect", "real", "category", "reason", "reference", "construct", "fix",
}  # fmt: skip
CATEGORIES = {"parliament", "aws-documented", "cdk-pipelines"}  # why a finding that is not "real" is accepted

# resource type -> (kind, property path) of every policy document it can hold. "Policies[]" = each list item's
# PolicyDocument. Kinds: identity, resource, key (Resource "*" is the key), trust (the resource is the role).
POLICY_LOCATIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "AWS::IAM::Policy": (("identity", "PolicyDocument"),),
    "AWS::IAM::ManagedPolicy": (("identity", "PolicyDocument"),),
    "AWS::IAM::Role": (("identity", "Policies[]"), ("trust", "AssumeRolePolicyDocument")),
    "AWS::IAM::User": (("identity", "Policies[]"),),
    "AWS::IAM::Group": (("identity", "Policies[]"),),
    "AWS::S3::BucketPolicy": (("resource", "PolicyDocument"),),
    "AWS::SNS::TopicPolicy": (("resource", "PolicyDocument"),),
    "AWS::SQS::QueuePolicy": (("resource", "PolicyDocument"),),
    "AWS::KMS::Key": (("key", "KeyPolicy"),),
    "AWS::EC2::VPCEndpoint": (("resource", "PolicyDocument"),),
    "AWS::ECR::Repository": (("resource", "RepositoryPolicyText"),),
    "AWS::Logs::ResourcePolicy": (("resource", "PolicyDocument"),),
    "AWS::SecretsManager::ResourcePolicy": (("resource", "ResourcePolicy"),),
    "AWS::SageMaker::ModelPackageGroup": (("resource", "ModelPackageGroupPolicy"),),
}


@dataclass(frozen=True)
class Document:
    """One policy document, resolved and ready for parliament."""

    policy: str  # "<assembly dir>/<stack name>/<logical id>/<property>"
    resource_type: str
    kind: str
    document: dict[str, Any]

    @property
    def statements(self) -> list[dict[str, Any]]:
        return self.document["Statement"]


@dataclass(frozen=True)
class Finding:
    """One parliament finding about one action (or condition key) of one statement."""

    issue: str
    policy: str
    resource_type: str
    statement: int | None
    action: str | None
    written: tuple[str, ...]
    resources: tuple[str, ...]
    condition: str | None
    effect: str | None
    detail: str

    def __str__(self) -> str:
        about = " ".join(
            f"{k}={v}" for k, v in (("action", self.action), ("condition", self.condition)) if v is not None
        )
        return (
            f"{self.issue} {about} in {self.policy} statement {self.statement} "
            f"(Action {list(self.written)}, Resource {list(self.resources)}): {self.detail[:300]}"
        )


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# --- collecting the documents -----------------------------------------------------------------------------------


def documents(stacks: list[Stack], outdir: Path) -> list[Document]:
    found = []
    for stack in stacks:
        prefix = "/".join([*stack.path.parent.relative_to(outdir).parts, stack.stack_name])
        for logical_id, resource in stack.template.get("Resources", {}).items():
            for kind, path, raw in _raw_documents(resource):
                document = _prepare(stack.resolver, logical_id, kind, raw)
                found.append(Document(f"{prefix}/{logical_id}/{path}", resource["Type"], kind, document))
    return found


def _raw_documents(resource: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    props = resource.get("Properties", {})
    for kind, path in POLICY_LOCATIONS.get(resource["Type"], ()):
        if path == "Policies[]":
            for index, policy in enumerate(as_list(props.get("Policies"))):
                yield kind, f"Policies[{index}]", policy["PolicyDocument"]
        elif path in props:
            yield kind, path, props[path]


def _prepare(resolver: Resolver, logical_id: str, kind: str, raw: Any) -> dict[str, Any]:
    document = resolver.resolve(raw)
    if isinstance(document, str):  # e.g. AWS::Logs::ResourcePolicy holds the policy as a JSON string
        document = json.loads(document)
    document = copy.deepcopy(document)
    document["Statement"] = as_list(document.get("Statement"))
    for statement in document["Statement"]:
        _stringify_condition_values(statement)
        if kind == "trust":
            statement.setdefault("Resource", resolver.arn(logical_id))
        elif kind == "key" and statement.get("Resource") == "*":
            statement["Resource"] = resolver.arn(logical_id)
    return document


def _stringify_condition_values(statement: dict[str, Any]) -> None:
    def text(value: Any) -> Any:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    for block in statement.get("Condition", {}).values():
        for key, value in block.items():
            block[key] = [text(v) for v in value] if isinstance(value, list) else text(value)


def policy_shaped_paths(stacks: list[Stack], outdir: Path) -> set[str]:
    """Every property path of every resource whose value is a policy document, whatever the resource type."""
    found: set[str] = set()

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str) and '"Statement"' in value:
            value = _json_or_none(value)
        if isinstance(value, dict):
            if "Statement" in value and ("Version" in value or isinstance(value["Statement"], list)):
                found.add(path)
                return
            for key, item in value.items():
                walk(item, f"{path}/{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")

    for stack in stacks:
        prefix = "/".join([*stack.path.parent.relative_to(outdir).parts, stack.stack_name])
        for logical_id, resource in stack.template.get("Resources", {}).items():
            for key, value in resource.get("Properties", {}).items():
                walk(value, f"{prefix}/{logical_id}/{key}")
    # Roles' inline policies are listed as Policies[i]/PolicyDocument; lint ids say Policies[i].
    return {re.sub(r"(Policies\[\d+\])/PolicyDocument$", r"\1", p) for p in found}


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


# --- linting ----------------------------------------------------------------------------------------------------


def lint(document: Document) -> list[Finding]:
    """parliament's findings for one document, one per (issue, statement, action or condition key)."""
    header = {k: v for k, v in document.document.items() if k != "Statement"}
    # One statement per line: parliament reports the line of a statement's finding, which gives its index.
    text = json.dumps(header)[:-1] + (", " if header else "") + '"Statement": [\n'
    text += ",\n".join(json.dumps(s) for s in document.statements) + "\n]}"
    policy = analyze_policy_string(text, filepath=document.policy)
    findings: set[Finding] = set()
    for raw in policy.findings:
        finding = enhance_finding(raw)  # raises on an issue code parliament's config does not know
        line = finding.location.get("line") if isinstance(finding.location, dict) else None
        index = line - 2 if isinstance(line, int) and 0 <= line - 2 < len(document.statements) else None
        findings.update(_split(finding, document, index))
    return sorted(findings, key=lambda f: (f.policy, f.statement or -1, f.issue, f.action or "", f.condition or ""))


def _split(finding: Any, document: Document, index: int | None) -> Iterator[Finding]:
    statement = document.statements[index] if index is not None else {}
    written = tuple(str(a) for a in as_list(statement.get("Action", statement.get("NotAction"))))
    resources = tuple(str(r) for r in as_list(statement.get("Resource", statement.get("NotResource"))))

    def make(action: str | None = None, condition: str | None = None) -> Finding:
        via = tuple(w for w in written if action is None or fnmatch.fnmatchcase(action.lower(), w.lower()))
        return Finding(
            issue=finding.issue,
            policy=document.policy,
            resource_type=document.resource_type,
            statement=index,
            action=action,
            written=via or written,
            resources=resources,
            condition=condition,
            effect=statement.get("Effect"),
            detail=str(finding.detail),
        )

    detail = finding.detail
    if finding.issue == "RESOURCE_MISMATCH":
        yield from (make(action=item["action"]) for item in detail)
    elif finding.issue == "RESOURCE_STAR":
        yield from (make(action=action) for action in detail)
    elif finding.issue == "UNKNOWN_CONDITION_FOR_ACTION":
        key, action = re.fullmatch(r"Unknown condition (\S+) for action (\S+)", detail).groups()
        yield make(action=action, condition=key)
    elif finding.issue in ("MISMATCHED_TYPE", "MISMATCHED_TYPE_BUT_USABLE"):
        subject = re.match(r"Type mismatch: (\S+) requires", detail).group(1)
        block = statement.get("Condition", {}).get(subject)
        keys = list(block) if isinstance(block, dict) else [subject]  # operator vs key type: each key under it
        yield from (make(condition=key) for key in keys)
    elif finding.issue in ("UNKNOWN_ACTION", "UNKNOWN_PREFIX"):
        yield make(action=str(finding.location.get("string")))
    else:
        yield make()


# --- the allow-list ---------------------------------------------------------------------------------------------


def matches(entry: dict[str, Any], finding: Finding) -> bool:
    """True when the entry covers the finding exactly: an entry field left out matches only an empty value."""
    checks = (
        entry["issue"] == finding.issue,
        _same(entry.get("actions"), finding.action),
        entry.get("written") is None or entry["written"] in finding.written,
        entry.get("condition") == finding.condition,
        entry.get("resource") is None or all(fnmatch.fnmatchcase(r, entry["resource"]) for r in finding.resources),
        entry.get("policy") is None or fnmatch.fnmatchcase(finding.policy, entry["policy"]),
        entry.get("policy_type") is None or entry["policy_type"] == finding.resource_type,
        entry.get("effect") is None or entry["effect"] == finding.effect,
    )
    return all(checks)


def _same(actions: list[str] | None, action: str | None) -> bool:
    if actions is None:
        return action is None
    return action is not None and action.lower() in {a.lower() for a in actions}


def unexpected(findings: list[Finding], entries: list[dict[str, Any]]) -> list[Finding]:
    return [f for f in findings if not any(matches(e, f) for e in entries)]


# --- fixtures ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Linted:
    documents: list[Document]
    findings: list[Finding]
    uncovered: set[str]


@pytest.fixture(scope="module")
def linted(synthesized) -> Linted:
    stacks = load_assembly(synthesized.outdir)
    templates = sorted(synthesized.outdir.glob("**/*.template.json"))
    assert sorted(s.path for s in stacks) == templates, "the manifests name every template file of the assembly"
    loaded = [s.template for s in stacks]
    assert all(t in loaded for t in synthesized.templates.values()), "the fixture's templates are among them"
    assert {s.path.parent.name for s in stacks} >= {"assembly-Pipeline-staging", "assembly-Pipeline-prod"}
    docs = documents(stacks, synthesized.outdir)
    findings = [f for d in docs for f in lint(d)]
    uncovered = policy_shaped_paths(stacks, synthesized.outdir) - {d.policy for d in docs}
    kinds = Counter(d.kind for d in docs)
    print(
        f"\nparliament linted {len(docs)} policies with {sum(len(d.statements) for d in docs)} statements "
        f"in {len(stacks)} templates ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}); "
        f"{len(findings)} findings, {len(unexpected(findings, ALLOW_LIST))} not allow-listed"
    )
    return Linted(docs, findings, uncovered)


# --- the lint over the synthesized app --------------------------------------------------------------------------


def test_every_policy_document_is_linted(linted: Linted) -> None:
    assert not linted.uncovered, f"policy documents no POLICY_LOCATIONS entry covers: {sorted(linted.uncovered)}"
    kinds = {d.resource_type for d in linted.documents}
    assert {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::Role", "AWS::KMS::Key"} <= kinds
    assert {"AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy"} <= kinds
    assert any("Policies[" in d.policy for d in linted.documents), "role inline policies are linted"
    unresolved = [
        d.policy for d in linted.documents if "Fn::" in json.dumps(d.document) or '"Ref"' in json.dumps(d.document)
    ]
    assert not unresolved, f"intrinsics left unresolved in {unresolved}"


def test_policies_have_no_findings_but_the_documented_ones(linted: Linted) -> None:
    new = unexpected(linted.findings, ALLOW_LIST)
    assert not new, f"{len(new)} parliament findings not in {ALLOW_LIST_FILE.name}:\n" + "\n".join(map(str, new))


def test_every_allow_list_entry_still_matches_a_finding(linted: Linted) -> None:
    stale = [e["id"] for e in ALLOW_LIST if not e.get("real") and not any(matches(e, f) for f in linted.findings)]
    assert not stale, f"entries of {ALLOW_LIST_FILE.name} that match no finding any more (delete them): {stale}"


REAL = [e for e in ALLOW_LIST if e.get("real")]


@pytest.mark.parametrize(
    "entry",
    [pytest.param(e, id=e["id"], marks=pytest.mark.xfail(strict=True, reason=e["reason"])) for e in REAL],
)
def test_real_finding_is_fixed(linted: Linted, entry: dict[str, Any]) -> None:
    # xfail(strict) while the defect is in the templates; once fixed this passes, which fails the run: delete the entry
    still = [str(f) for f in linted.findings if matches(entry, f)]
    assert not still, f"{entry['id']} ({entry.get('construct')}): fix: {entry.get('fix')}\n" + "\n".join(still)


# --- the allow-list file itself ---------------------------------------------------------------------------------


def test_allow_list_entries_are_documented_and_precise() -> None:
    ids = [e["id"] for e in ALLOW_LIST]
    assert len(ids) == len(set(ids)), "entry ids are unique"
    for entry in ALLOW_LIST:
        assert set(entry) <= ENTRY_FIELDS, f"{entry['id']}: unknown fields {set(entry) - ENTRY_FIELDS}"
        assert entry.get("reason") and entry.get("issue"), f"{entry['id']} needs an issue code and a reason"
        assert entry.get("actions") or entry.get("condition"), f"{entry['id']} names the actions or condition key"
        if entry.get("real"):
            assert entry.get("construct") and entry.get("fix"), f"{entry['id']}: a real defect names its fix"
            assert "category" not in entry, f"{entry['id']}: a real defect is not accepted"
        else:
            assert entry.get("category") in CATEGORIES, f"{entry['id']}: category one of {sorted(CATEGORIES)}"
            assert entry.get("reference"), f"{entry['id']}: an accepted finding cites the documentation it relies on"


# --- the lint catches bad policies (no synth needed) ------------------------------------------------------------


def _document(*statements: dict[str, Any], resource_type: str = "AWS::IAM::Policy", kind: str = "identity") -> Document:
    return Document(
        "unit/Stack/Policy/PolicyDocument",
        resource_type,
        kind,
        {"Version": "2012-10-17", "Statement": list(statements)},
    )


BUCKET = "arn:aws:s3:::mlapi-dev-data"


def test_a_clean_statement_has_no_finding() -> None:
    doc = _document({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"{BUCKET}/*"})
    assert lint(doc) == []


def test_a_misspelled_action_is_a_finding() -> None:
    doc = _document(
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": BUCKET},
        {"Effect": "Allow", "Action": ["s3:GetObjekt"], "Resource": f"{BUCKET}/*"},
    )
    [finding] = lint(doc)
    assert (finding.issue, finding.action, finding.statement) == ("UNKNOWN_ACTION", "s3:GetObjekt", 1)
    assert unexpected([finding], ALLOW_LIST) == [finding]


def test_a_resource_of_the_wrong_type_is_a_finding() -> None:
    # s3:GetObject needs an object ARN (bucket/key); the bucket's own ARN grants nothing.
    doc = _document({"Effect": "Allow", "Action": "s3:GetObject", "Resource": BUCKET})
    [finding] = lint(doc)
    assert (finding.issue, finding.action, finding.resources) == ("RESOURCE_MISMATCH", "s3:GetObject", (BUCKET,))
    assert unexpected([finding], ALLOW_LIST) == [finding]


def test_a_service_prefix_that_does_not_match_the_arn_is_a_finding() -> None:
    # Issue 12, defect 11: codestar-connections:UseConnection on a codeconnections: ARN.
    arn = "arn:aws:codeconnections:eu-west-1:123456789012:connection/00000000-0000-0000-0000-000000000000"
    [finding] = lint(_document({"Effect": "Allow", "Action": "codestar-connections:UseConnection", "Resource": arn}))
    assert (finding.issue, finding.action) == ("RESOURCE_MISMATCH", "codestar-connections:UseConnection")
    assert lint(_document({"Effect": "Allow", "Action": "codeconnections:UseConnection", "Resource": arn})) == []


def test_a_condition_the_action_does_not_support_is_a_finding() -> None:
    # kms:DescribeKey carries no encryption context (issue 12, defect 7).
    doc = _document(
        {
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "kms:DescribeKey",
            "Resource": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "Condition": {"StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn": "arn:aws:cloudtrail:*:1:trail/*"}},
        },
        resource_type="AWS::KMS::Key",
        kind="key",
    )
    [finding] = lint(doc)
    assert (finding.issue, finding.action, finding.condition) == (
        "UNKNOWN_CONDITION_FOR_ACTION",
        "kms:DescribeKey",
        "kms:EncryptionContext:aws:cloudtrail:arn",
    )


def test_the_allow_list_matches_only_what_it_names() -> None:
    # The s3:List* false positive covers s3:ListAllMyBuckets reached through CDK's s3:List* on a bucket,
    # not the same action written out, nor s3:List* on another account-level action's resource.
    via_wildcard = _document(
        {
            "Effect": "Allow",
            "Action": ["s3:GetBucket*", "s3:GetObject*", "s3:List*"],
            "Resource": [BUCKET, f"{BUCKET}/*"],
        }
    )
    assert unexpected(lint(via_wildcard), ALLOW_LIST) == []
    written_out = _document({"Effect": "Allow", "Action": ["s3:ListAllMyBuckets"], "Resource": BUCKET})
    [finding] = lint(written_out)
    assert unexpected([finding], ALLOW_LIST) == [finding]


def test_an_unresolved_intrinsic_would_be_a_finding() -> None:
    # Why the templates are resolved first: parliament cannot read a CloudFormation function as an ARN.
    doc = _document({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["Queue", "Arn"]}})
    text = json.dumps(doc.document)
    assert "INVALID_ARN" in {f.issue for f in analyze_policy_string(text).findings}


# --- the resolver ----------------------------------------------------------------------------------------------


TEMPLATE = {
    "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "AWS::Region"}, "eu-west-1"]}},
    "Resources": {
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "mlapi-dev-data"}},
        "Queue": {"Type": "AWS::SQS::Queue"},
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "alarms"}},
        "Key": {"Type": "AWS::KMS::Key"},
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "runner", "Path": "/service/"}},
        "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "/aws/lambda/fn"}},
    },
}


def test_the_resolver_gives_each_intrinsic_its_documented_value() -> None:
    resolver = Resolver(TEMPLATE, imports={"other:KeyArn": "arn:aws:kms:eu-west-1:123456789012:key/x"}.__getitem__)
    resolve = resolver.resolve
    assert resolve({"Ref": "Bucket"}) == "mlapi-dev-data"
    assert resolve({"Fn::GetAtt": ["Bucket", "Arn"]}) == "arn:aws:s3:::mlapi-dev-data"
    assert resolve({"Fn::Join": ["", [{"Fn::GetAtt": ["Bucket", "Arn"]}, "/*"]]}) == "arn:aws:s3:::mlapi-dev-data/*"
    assert resolve({"Ref": "Topic"}) == "arn:aws:sns:eu-west-1:123456789012:alarms"
    assert resolve({"Ref": "Queue"}).startswith("https://sqs.eu-west-1.amazonaws.com/123456789012/stack-Queue-")
    assert re.fullmatch(
        r"arn:aws:kms:eu-west-1:123456789012:key/[0-9a-f-]{36}", resolve({"Fn::GetAtt": ["Key", "Arn"]})
    )
    assert resolve({"Fn::GetAtt": "Role.Arn"}) == "arn:aws:iam::123456789012:role/service/runner"
    assert resolve({"Fn::GetAtt": ["Logs", "Arn"]}) == "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/fn:*"
    assert (
        resolve({"Fn::Sub": "arn:${AWS::Partition}:s3:::${Bucket}/${!literal}"})
        == "arn:aws:s3:::mlapi-dev-data/${literal}"
    )
    assert resolve({"Fn::Sub": ["${Name}-x", {"Name": {"Ref": "AWS::AccountId"}}]}) == "123456789012-x"
    assert resolve({"Fn::ImportValue": "other:KeyArn"}) == "arn:aws:kms:eu-west-1:123456789012:key/x"
    assert resolve({"Fn::Select": [1, {"Fn::Split": [":", "a:b:c"]}]}) == "b"
    assert resolve({"Fn::If": ["IsProd", "yes", "no"]}) == "yes"
    assert resolve(["a", {"Ref": "AWS::NoValue"}]) == ["a"]


def test_the_resolver_refuses_what_it_does_not_know() -> None:
    resolver = Resolver(TEMPLATE)
    for value in ({"Fn::GetAtt": ["Bucket", "NoSuchAttribute"]}, {"Ref": "Missing"}, {"Fn::ImportValue": "x"}):
        with pytest.raises(UnresolvableError):
            resolver.resolve(value)

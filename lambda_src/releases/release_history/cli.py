"""Operator CLI for the release history: list, show, register, rollback, freeze, unfreeze.

Run from the repo root:  python -m lambda_src.releases.release_history [flags] COMMAND ...
(or from lambda_src/releases:  python -m release_history ...). Exit codes: 0 ok, 1 AWS error,
2 usage, 3 not found, 4 refused, 5 credentials/region/config problem.
"""

import argparse
import getpass
import json
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError, ProfileNotFound

from . import aws
from .endpoint import EndpointGateway
from .errors import ConfigError, NotFoundError, RefusedError, ReleaseError, TransientAwsError
from .repository import Intent, IntentState, Release, ReleaseRepository, Status
from .rollback import RollbackResult, complete
from .timeutil import iso, utcnow

EXIT_AWS, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_CONFIG = 1, 3, 4, 5


def _global_flags(top_level: bool) -> argparse.ArgumentParser:
    # Accepted before or after the command: the top level holds the env defaults, and the
    # commands' copies use SUPPRESS so they only override when given (fresh actions each time,
    # because argparse shares parent actions between parsers).
    env = os.environ.get
    defaults = {
        "region": env("AWS_REGION") or env("AWS_DEFAULT_REGION"),
        "profile": env("AWS_PROFILE"),
        "table": env("RELEASES_TABLE") or env("TABLE_NAME"),
        "endpoint": env("ENDPOINT_NAME"),
    }
    flags = argparse.ArgumentParser(add_help=False)
    for name, text in (
        ("region", "AWS region (env AWS_REGION)"),
        ("profile", "AWS profile (env AWS_PROFILE)"),
        ("table", "release table (env RELEASES_TABLE)"),
        ("endpoint", "endpoint name (env ENDPOINT_NAME)"),
    ):
        flags.add_argument(f"--{name}", help=text, default=defaults[name] if top_level else argparse.SUPPRESS)
    flags.add_argument(
        "--json", action="store_true", help="JSON output", default=False if top_level else argparse.SUPPRESS
    )
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="release_history",
        parents=[_global_flags(True)],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = _global_flags(False)
    commands = parser.add_subparsers(dest="command", required=True)

    releases = commands.add_parser("releases", parents=[common], help="release history")
    sub = releases.add_subparsers(dest="releases_command", required=True)
    sub.add_parser("list", parents=[common], help="all releases, newest first")
    show = sub.add_parser("show", parents=[common], help="one release with its audit trail")
    show.add_argument("release_id")
    register = sub.add_parser("register", parents=[common], help="record a release before UpdateEndpoint")
    register.add_argument("release_id", help="the endpoint config name")
    register.add_argument("--model-version")
    register.add_argument("--model-hash")
    register.add_argument("--image")
    register.add_argument("--commit")
    register.add_argument("--approved-by", action="append", default=[])

    rollback = commands.add_parser("rollback", parents=[common], help="put the endpoint on a release")
    rollback.add_argument("--to", required=True, dest="target", help="release id (endpoint config name)")
    rollback.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rollback.add_argument(
        "--force",
        action="store_true",
        help="allow a release that never went live or was rolled back (it is baked again)",
    )
    rollback.add_argument("--reason", default="manual rollback")
    rollback.add_argument("--by", default=None, help="who (default: caller identity)")
    for name, text in (
        ("freeze", "make automatic rollback notify-only"),
        ("unfreeze", "re-enable automatic rollback (also lifts the flap guard)"),
    ):
        command = commands.add_parser(name, parents=[common], help=text)
        command.add_argument("--reason", required=True)
        command.add_argument("--by", default=None, help="who (default: caller identity)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.table or not args.endpoint:
            raise ConfigError("set --table/--endpoint or RELEASES_TABLE/ENDPOINT_NAME")
        return _run(args)
    except (NoCredentialsError, NoRegionError, ProfileNotFound, ConfigError) as error:
        return _fail(EXIT_CONFIG, str(error))
    except NotFoundError as error:
        return _fail(EXIT_NOT_FOUND, str(error))
    except RefusedError as error:
        return _fail(EXIT_REFUSED, str(error))
    except (ReleaseError, ClientError, BotoCoreError) as error:
        return _fail(EXIT_AWS, str(error))


def _run(args: argparse.Namespace) -> int:
    session = aws.session(args.region, args.profile)
    table = session.resource("dynamodb", config=aws.retry_config()).Table(args.table)
    repo = ReleaseRepository(table, args.endpoint)
    endpoint = EndpointGateway(aws.client(session, "sagemaker"), args.endpoint)
    if args.command == "releases" and args.releases_command == "list":
        releases = repo.list_releases()
        _out(args, [r.to_dict() for r in releases], _table(releases))
    elif args.command == "releases" and args.releases_command == "show":
        release = _get(repo, args.release_id)
        _out(args, release.to_dict(), json.dumps(release.to_dict(), indent=2))
    elif args.command == "releases":
        _register(args, repo)
    elif args.command == "rollback":
        return _rollback(args, repo, endpoint, _who(args, session))
    else:
        frozen = args.command == "freeze"
        repo.set_freeze(frozen, reason=args.reason, by=_who(args, session), at=iso(utcnow()))
        freeze = repo.get_freeze()
        _out(args, freeze.__dict__, f"automatic rollback {'frozen' if frozen else 'enabled'}: {args.reason}")
    return 0


def _register(args: argparse.Namespace, repo: ReleaseRepository) -> None:
    release = Release(
        release_id=args.release_id,
        endpoint_name=repo.endpoint_name,
        status=Status.DEPLOYING,
        registered_at=iso(utcnow()),
        model_version=args.model_version,
        model_hash=args.model_hash,
        image=args.image,
        commit=args.commit,
        approved_by=args.approved_by,
    )
    if not repo.register(release):
        raise RefusedError(f"release {args.release_id} is already registered")
    _out(args, release.to_dict(), f"registered {args.release_id}")


def _rollback(args: argparse.Namespace, repo: ReleaseRepository, endpoint: EndpointGateway, who: str) -> int:
    target = _get(repo, args.target)
    if target.status == Status.ROLLED_BACK and not args.force:
        raise RefusedError(
            f"release {target.release_id} was rolled back ({target.rollback_reason or 'no reason'}); "
            "use --force to deploy it anyway"
        )
    if not target.live_at and not args.force:
        raise RefusedError(f"release {target.release_id} never went live; use --force to deploy it anyway")
    pending = repo.intent()
    if pending and pending.state == IntentState.OPEN:
        if pending.to_release != target.release_id:
            raise RefusedError(
                f"a rollback {pending.from_release} -> {pending.to_release} by {pending.by} is open "
                f"since {pending.opened_at}; finish it with `rollback --to {pending.to_release}`"
            )
        return _finish(args, repo, endpoint, pending)  # resume: verify with DescribeEndpoint, then record
    state = endpoint.describe()
    if state.config_name == target.release_id:
        _out(
            args,
            {"result": "already_on_target", "release": target.release_id},
            f"endpoint already on {target.release_id}",
        )
        return 0
    if state.busy:
        raise RefusedError(f"endpoint {state.name} is {state.status}; try again when it is InService")
    if not args.yes and not _confirm(f"Update {state.name} from {state.config_name} to {target.release_id}?"):
        raise RefusedError("not confirmed (use --yes to skip the prompt)")
    repo.ensure(state.config_name, iso(state.last_modified), lambda: endpoint.config_metadata(state.config_name))
    intent = Intent(
        episode=f"operator:{uuid.uuid4()}",
        from_release=state.config_name,
        to_release=target.release_id,
        by=who,
        reason=f"{args.reason} (by {who})",
        opened_at=iso(utcnow()),
        automatic=False,
    )
    if not repo.open_intent(intent):
        raise RefusedError("another rollback opened meanwhile; see `releases list` and try again")
    return _finish(args, repo, endpoint, intent)


def _finish(args: argparse.Namespace, repo: ReleaseRepository, endpoint: EndpointGateway, intent: Intent) -> int:
    """Complete the intent; one immediate second try, because UpdateEndpoint may already have happened."""
    try:
        result = _complete_once_more(repo, endpoint, intent)
    except (TransientAwsError, ClientError, BotoCoreError) as error:
        moved = _moved(endpoint, intent)
        if not moved:
            raise
        _fail(
            EXIT_AWS,
            f"the endpoint IS moving to {intent.to_release} (UpdateEndpoint succeeded), but recording "
            f"the release history failed: {error}. Run `rollback --to {intent.to_release}` again to "
            "record it (the controller completes it too).",
        )
        return EXIT_AWS
    if result == RollbackResult.ABANDONED:
        raise RefusedError(
            f"the endpoint moved to another config meanwhile; nothing changed "
            f"({intent.from_release} -> {intent.to_release} abandoned)"
        )
    payload = {"result": str(result), "from": intent.from_release, "to": intent.to_release}
    _out(args, payload, f"{result}: {intent.from_release} -> {intent.to_release}")
    return 0


def _complete_once_more(repo: ReleaseRepository, endpoint: EndpointGateway, intent: Intent) -> RollbackResult:
    try:
        return complete(repo, endpoint, intent)
    except TransientAwsError:
        return complete(repo, endpoint, intent)


def _moved(endpoint: EndpointGateway, intent: Intent) -> bool:
    try:
        return endpoint.describe().moving_to(intent.to_release)
    except (ClientError, BotoCoreError):
        return False


def _get(repo: ReleaseRepository, release_id: str) -> Release:
    release = repo.get(release_id)
    if release is None:
        raise NotFoundError(f"no release {release_id!r} for endpoint {repo.endpoint_name}")
    return release


def _who(args: argparse.Namespace, session: Any) -> str:
    if getattr(args, "by", None):
        return str(args.by)
    try:
        return str(aws.client(session, "sts").get_caller_identity()["Arn"])
    except (ClientError, BotoCoreError):
        return getpass.getuser()


def _confirm(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in {"y", "yes"}
    except EOFError:
        return False


def _table(releases: list[Release]) -> str:
    rows = [("RELEASE", "STATUS", "MODEL", "COMMIT", "DEPLOYED", "NOTE")]
    for r in releases:
        note = r.rollback_alarm or r.superseded_by or ""
        rows.append(
            (r.release_id, str(r.status), r.model_version or "-", (r.commit or "-")[:12], r.deployed_at or "-", note)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _fail(code: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code

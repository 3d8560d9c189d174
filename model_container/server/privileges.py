"""Drop from root to the dedicated serving user before any model file is read."""

from __future__ import annotations

import os
import pwd


def resolve_user(user: str) -> tuple[str, int, int, str]:
    """Return (name, uid, gid, home) for a user name or numeric uid."""
    try:
        record = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if user.isdigit():  # a bare uid with no passwd entry: use it as its own group
            return user, int(user), int(user), "/"
        raise SystemExit(f"MODEL_SERVER_USER={user!r} does not exist; refusing to serve as root") from None
    return record.pw_name, record.pw_uid, record.pw_gid, record.pw_dir


def drop_privileges(user: str) -> dict[str, object]:
    """If running as root, become `user` for good (groups, gid, then uid); describe the result."""
    if os.geteuid() != 0:
        return {"user_switch": "not root, kept current user", "uid": os.getuid(), "gid": os.getgid()}
    name, uid, gid, home = resolve_user(user)
    if uid == 0:
        raise SystemExit(f"MODEL_SERVER_USER={user!r} is root; the server never runs inference as root")
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise SystemExit("privilege drop failed: could regain root")
    os.environ.update(HOME=home, USER=name, LOGNAME=name)
    return {"user_switch": f"root -> {name}", "uid": uid, "gid": gid}

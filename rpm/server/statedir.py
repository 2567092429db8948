"""Where the server keeps its token, registry and logs: a private directory (mode 0700)."""

from __future__ import annotations

import os

FORBIDDEN = ("/var/lib/rpm",)  # the RPM package manager's database


def check_state_dir(path: str) -> str | None:
    """Why path cannot be the state directory, or None if it can: the RPM package manager's
    database, a symbolic link (it could be pointed elsewhere behind our back), or a
    directory another user owns (who could then read or replace what we keep there)."""
    if os.path.realpath(path).rstrip("/") in FORBIDDEN:
        return (
            f"{path} is the RPM package manager's database; "
            "choose another --state-dir such as /var/lib/rpm-server"
        )
    if os.path.islink(path.rstrip("/") or "/"):
        return f"--state-dir {path} is a symbolic link; give the real directory"
    try:
        owner = os.stat(path).st_uid
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"cannot use --state-dir {path}: {err.strerror}"
    if owner != os.geteuid():
        return (
            f"--state-dir {path} belongs to uid {owner}, not to this user "
            f"(uid {os.geteuid()}); use a directory of your own"
        )
    return None


def prepare_state_dir(path: str) -> None:
    """Create the directory (and its logs/) with mode 0700, tightening looser modes."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)
    os.makedirs(os.path.join(path, "logs"), mode=0o700, exist_ok=True)

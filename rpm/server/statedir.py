"""Where the server keeps its token, registry and logs: a private directory (mode 0700)."""

from __future__ import annotations

import os

FORBIDDEN = ("/var/lib/rpm",)  # the RPM package manager's database


def check_state_dir(path: str) -> str | None:
    """Why path cannot be the state directory, or None if it can."""
    if os.path.realpath(path).rstrip("/") in FORBIDDEN:
        return (
            f"{path} is the RPM package manager's database; "
            "choose another --state-dir such as /var/lib/rpm-server"
        )
    return None


def prepare_state_dir(path: str) -> None:
    """Create the directory (and its logs/) with mode 0700, tightening looser modes."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)
    os.makedirs(os.path.join(path, "logs"), mode=0o700, exist_ok=True)

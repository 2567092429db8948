"""Where things live by default: the server's state directory and, in it, its token file.
Clients need these too, to find a local server's token."""

from __future__ import annotations

import os


def default_state_dir(environ: dict | None = None) -> str:
    """$XDG_STATE_HOME/rpm, else ~/.local/state/rpm (never /var/lib/rpm)."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec says to ignore relative paths
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "rpm")

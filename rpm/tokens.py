"""The token a client sends with AUTH: one reader of token files, which refuses files that
group or others can read (as ssh refuses such keys), and where a client finds its token."""

from __future__ import annotations

import os
import stat

from rpm.addresses import Address
from rpm.paths import default_state_dir

MIN_TOKEN_CHARS = 16


class TokenError(Exception):
    """The token file cannot be used; the message says how to fix it."""


def read_token(path: str) -> str:
    """Read a token file, refusing one that group or others could read."""
    try:
        info = os.stat(path)
    except FileNotFoundError as err:
        raise TokenError(f"token file {path} does not exist") from err
    except OSError as err:
        raise TokenError(f"cannot read the token file {path}: {err.strerror}") from err
    if not stat.S_ISREG(info.st_mode):
        raise TokenError(f"token file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise TokenError(
            f"token file {path} is readable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise TokenError(f"cannot read the token file {path}: {err}") from err
    if len(token) < MIN_TOKEN_CHARS or any(ch.isspace() for ch in token):
        raise TokenError(
            f"token file {path} must hold one token of at least "
            f"{MIN_TOKEN_CHARS} characters without spaces"
        )
    return token


def default_token(address: Address, environ: dict | None = None) -> str | None:
    """$RPM_TOKEN, else for a local server its default token file if this user can read it;
    None when there is neither (the client is then read-only)."""
    environ = os.environ if environ is None else environ
    if environ.get("RPM_TOKEN"):
        return environ["RPM_TOKEN"]
    if not address.is_local:
        return None
    path = os.path.join(default_state_dir(environ), "token")
    if not os.access(path, os.R_OK):
        return None
    return read_token(path)


def token_for(address: Address, token_file: str | None, environ: dict | None = None) -> str | None:
    """The token a client uses for a server: from --token-file, else $RPM_TOKEN, else a
    local server's default token file (rpm-tui and rpmctl alike); TokenError if unreadable."""
    return read_token(token_file) if token_file else default_token(address, environ)

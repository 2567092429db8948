"""The server's token: made on first start, read only from private files, compared in
constant time; and a per-peer slowdown that makes guessing it across connections hopeless."""

from __future__ import annotations

import hmac
import os
import secrets
import stat

TOKEN_BYTES = 32  # token_urlsafe(32) gives 43 characters
MIN_TOKEN_CHARS = 16


class TokenError(Exception):
    """The token file cannot be used; the message says how to fix it."""


def create_token(path: str) -> str:
    """Write a new random token to path with mode 0600 (never overwriting a file)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    return token


def read_token(path: str) -> str:
    """Read a token file, refusing one that group or others could read."""
    try:
        info = os.stat(path)
    except FileNotFoundError as err:
        raise TokenError(f"token file {path} does not exist") from err
    if not stat.S_ISREG(info.st_mode):
        raise TokenError(f"token file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise TokenError(
            f"token file {path} is readable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )
    with open(path, encoding="utf-8") as handle:
        token = handle.read().strip()
    if len(token) < MIN_TOKEN_CHARS or any(ch.isspace() for ch in token):
        raise TokenError(
            f"token file {path} must hold one token of at least "
            f"{MIN_TOKEN_CHARS} characters without spaces"
        )
    return token


def load_token(state_dir: str, token_file: str | None) -> str:
    """The token from --token-file, else STATE_DIR/token, created on first start."""
    if token_file:
        return read_token(token_file)
    path = os.path.join(state_dir, "token")
    if not os.path.exists(path):
        return create_token(path)
    return read_token(path)


def token_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


class AuthThrottle:
    """After each failed AUTH from a peer address, its next AUTH waits twice as long."""

    def __init__(
        self,
        base: float = 0.25,
        cap: float = 30.0,
        forget_after: float = 900.0,
        max_peers: int = 10_000,
    ):
        self.base, self.cap, self.forget_after, self.max_peers = base, cap, forget_after, max_peers
        self._failures: dict[str, tuple[int, float]] = {}

    def delay(self, host: str, now: float) -> float:
        """Seconds to wait before answering an AUTH from host."""
        failures, last = self._failures.get(host, (0, 0.0))
        if failures == 0 or now - last > self.forget_after:
            return 0.0
        return min(self.base * 2 ** (failures - 1), self.cap)

    def failed(self, host: str, now: float) -> None:
        failures, last = self._failures.pop(host, (0, 0.0))
        if now - last > self.forget_after:
            failures = 0
        self._failures[host] = (failures + 1, now)
        while len(self._failures) > self.max_peers:
            del self._failures[next(iter(self._failures))]  # the least recently failed

    def succeeded(self, host: str) -> None:
        self._failures.pop(host, None)

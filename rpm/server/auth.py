"""The server's token: made on first start, read only from private files, compared in
constant time; and a per-peer slowdown that makes guessing it across connections hopeless."""

from __future__ import annotations

import hmac
import os
import secrets

from rpm.tokens import read_token

TOKEN_BYTES = 32  # token_urlsafe(32) gives 43 characters


def create_token(path: str) -> str:
    """Write a new random token to path with mode 0600 (never overwriting a file)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
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
    """Each wrong AUTH from a peer is answered twice as late as the one before, up to a cap;
    a peer is forgotten after a quiet while. Right answers are never delayed, and do not
    reset the count: on a shared peer (loopback) that would let a guesser go on."""

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

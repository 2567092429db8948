"""The audit trail: every mutating command and failed AUTH, in the store and the server's
log, written in batches a moment later (a reply goes out only when its reactor turn ends,
and this work would delay it). Bounded whoever sends what: each text is cut to
AUDIT_TEXT characters, and refusals before AUTH beyond REFUSALS_PER_SECOND from one peer
are counted, then recorded as one line, instead of one record each."""

from __future__ import annotations

from collections import Counter

from twisted.logger import Logger

from rpm.clock import wall_time
from rpm.commands import shown
from rpm.server.managed.records import AuditRecord

log = Logger()
AUDIT_DELAY = 0.02
AUDIT_TEXT = 200
REFUSALS_PER_SECOND = 10
MAX_PEERS = 10_000


class RefusalRate:
    """How many refusals each peer had in the current second, and how many went unrecorded."""

    def __init__(self, per_second: int = REFUSALS_PER_SECOND, max_peers: int = MAX_PEERS):
        self._per_second, self._max_peers = per_second, max_peers
        self._seconds: dict[str, tuple[int, int]] = {}  # peer -> (second, refusals in it)
        self.unrecorded: Counter[str] = Counter()

    def admit(self, peer: str, now: float) -> bool:
        """Whether this refusal is recorded on its own; if not, it is counted."""
        second, count = self._seconds.pop(peer, (int(now), 0))
        if second != int(now):
            second, count = int(now), 0
        self._seconds[peer] = (second, count + 1)
        while len(self._seconds) > self._max_peers:
            del self._seconds[next(iter(self._seconds))]  # the least recently refused
        if count < self._per_second:
            return True
        self.unrecorded[peer] += 1
        return False


class Auditor:
    """Takes audit records from the connections and writes them to the store and the log."""

    def __init__(self, reactor, store):
        self._reactor, self._store = reactor, store
        self._pending: list[AuditRecord] = []
        self._call = None
        self._refusals = RefusalRate()

    def record(self, session, command: str, result: str) -> None:
        """One mutating command or failed AUTH (the command already redacted of secrets)."""
        now = self._reactor.seconds()
        if not session.authenticated and not self._refusals.admit(session.throttle_key, now):
            return
        self._pending.append(
            AuditRecord(
                wall_time(self._reactor),
                session.peer,
                session.authenticated,
                shown(command, AUDIT_TEXT),
                shown(result, AUDIT_TEXT),
            )
        )
        if self._call is None:
            self._call = self._reactor.callLater(AUDIT_DELAY, self.flush)

    def flush(self) -> None:
        """Log and store the pending records now, with a count of those not kept one by one."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        records, self._pending = self._pending, []
        now = wall_time(self._reactor)
        for peer, count in self._refusals.unrecorded.items():
            text = f"({count} more refused requests before AUTH, not recorded one by one)"
            records.append(
                AuditRecord(now, peer, False, text, f"more than {REFUSALS_PER_SECOND}/s")
            )
        self._refusals.unrecorded.clear()
        for record in records:
            log.info(
                "{peer} {auth} {command} -> {result}",
                peer=record.peer,
                auth="auth" if record.authenticated else "anon",
                command=record.command,
                result=record.result,
            )
        if records:
            self._store.add_audits(records).addErrback(
                lambda failure: log.failure("cannot write the audit records", failure)
            )

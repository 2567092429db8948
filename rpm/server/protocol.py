"""One client connection: its session, one reply per request in order, events, and flow
control. Bytes become request lines in framing.py; this module keeps connection state only.

Requests are executed one at a time: while one is in progress (STOP waits for the process
to end) or while the client is not reading what we send, the next waits (STARTs pipelined
together overlap, answered in order, so their records share a transaction), and no more than
MAX_PENDING_INPUT bytes are read ahead, so a client can never make the server buffer without
bound. A connection silent for --idle-timeout seconds is closed, unless it is streaming.
"""

from __future__ import annotations

from collections import deque
from inspect import iscoroutine

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from rpm import __version__
from rpm.commands import ALWAYS_ALLOWED, LOOPBACK_READ_ONLY, MUTATING, shown
from rpm.errors import AuthRequired, RPMError
from rpm.server.faults import fault_error
from rpm.server.framing import MAX_LINE, Framer, FramingError
from rpm.server.handlers import HANDLERS, resolve_name
from rpm.server.parser import parse_arguments, redact, split_verb
from rpm.server.session import Session, unix_peer_key
from rpm.server.tablefeed import TableFeed
from rpm.wire import TEXT, Error, Event, ok_line

log = Logger()
MAX_PENDING_INPUT = 4 * MAX_LINE  # read while requests wait, up to this much
BUSY, WRITE_FULL = "busy", "write-full"
OVERLAPPING = frozenset({"START"})  # verbs that may run while earlier ones are in progress
MAX_OVERLAPPING = 64


def _verb_of(text: str) -> str | None:
    """A queued request's verb, or None for one that names no command (it is answered
    with its error in its turn, not while deciding whether it may overlap)."""
    try:
        return split_verb(text)[0]
    except RPMError:
        return None


class _Request:
    """A request executed and waiting for its turn to be answered."""

    _UNSET = object()

    def __init__(self, text: str, verb: str | None, command, outcome=_UNSET):
        self.text, self.verb, self.command = text, verb, command
        self.outcome = outcome

    @property
    def settled(self) -> bool:
        return self.outcome is not self._UNSET

    def settle(self, outcome) -> None:
        """The reply or the Failure the request ended with."""
        self.outcome = outcome


@implementer(IPushProducer)
class _WriteGate:
    """Told by the transport when the client stops reading (its buffer is full) and resumes."""

    def __init__(self, connection: RPMProtocol):
        self._connection = connection
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True
        self._connection.hold(WRITE_FULL)

    def resumeProducing(self) -> None:
        self.paused = False
        self._connection.writable()

    def stopProducing(self) -> None:
        self.paused = True


@implementer(IHalfCloseableProtocol)
class RPMProtocol(Protocol, TimeoutMixin):
    def __init__(self, core, session: Session):
        self.core = core
        self.session = session
        self.table_feed: TableFeed | None = None
        self.following: set[int] = set()
        self.dropped_events = 0
        self.callLater = core.reactor.callLater  # TimeoutMixin's clock: the server's reactor
        self._framer = Framer()
        self._requests: deque[str | FramingError] = deque()
        self._gate = _WriteGate(self)
        self._holds: set[str] = set()
        self._pending_input = 0
        self._reading_paused = False
        self._input_ended = False
        self._after: list = []
        self._verb = self._command = None  # of the request being dispatched, once known
        self._in_flight: deque[_Request] = deque()  # executed, in order, not yet answered

    # -- connection life -------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.transport.registerProducer(self._gate, True)
        if self.session.host == "unix":
            self.session.throttle_key = unix_peer_key(self.transport)
        note = "" if self.session.authenticated else " auth-required"
        self.transport.write(ok_line(f"rpm {__version__} ready{note}"))
        self.setTimeout(self.core.config.idle_timeout or None)
        log.info("connection from {peer}", peer=self.session.peer)

    def connectionLost(self, reason=None) -> None:
        self.setTimeout(None)
        self.stop_watch()
        self.core.outputs.unfollow(self)
        self.factory.released(self.session.host)
        log.info("connection from {peer} closed", peer=self.session.peer)

    def close(self) -> None:
        self.transport.loseConnection()

    def readConnectionLost(self) -> None:
        """The client sent all it will send (`nc -N`, shutdown(SHUT_WR)): answer every request
        already received, an unterminated last line included, then close. A connection that
        is watching or following keeps streaming until the client closes it."""
        self._input_ended = True
        self._requests.extend(self._framer.finish())
        self._run_requests()
        self._close_if_done()

    def writeConnectionLost(self) -> None:
        """Nothing we send can arrive any more."""
        self.close()

    def _close_if_done(self) -> None:
        if self._input_ended and not self._holds and not self._requests and not self.streaming:
            self.close()

    def timeoutConnection(self) -> None:
        """Silent for --idle-timeout seconds: say so and close, unless streaming."""
        if self.streaming:
            self.resetTimeout()
            return
        timeout = self.core.config.idle_timeout
        self.send_event(Event("bye", f"idle for {timeout:g} s", {"reason": "idle-timeout"}))
        self.close()

    @property
    def streaming(self) -> bool:
        """Watching or following: such connections are exempt from the idle timeout."""
        return self.table_feed is not None or bool(self.following)

    # -- input -----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._count_held_input(len(data))
        items = self._framer.feed(data)
        if items:
            self.resetTimeout()
            self._requests.extend(items)
            self._run_requests()

    def _run_requests(self) -> None:
        """Execute waiting requests in order until one has to wait (see hold), or the
        connection is closing (after EXIT, nothing more is answered)."""
        while self._requests and not self._holds and not self.transport.disconnecting:
            item = self._requests.popleft()
            if isinstance(item, RPMError):  # a line that cannot be a request
                self._in_flight.append(_Request("", None, None, Error(item.code, item.message)))
                self._send_settled()
            else:
                self._execute(item)

    # -- flow control ----------------------------------------------------------------------

    def hold(self, reason: str) -> None:
        """Stop executing requests until release(reason). The socket is still read (a TLS
        handshake needs that) until MAX_PENDING_INPUT bytes wait, then reading stops too."""
        self._holds.add(reason)

    def release(self, reason: str) -> None:
        self._holds.discard(reason)
        if self._holds:
            return
        self._pending_input = 0
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()
        self._run_requests()
        self._close_if_done()

    def _count_held_input(self, size: int) -> None:
        if self._holds and not self._reading_paused:
            self._pending_input += size
            if self._pending_input > MAX_PENDING_INPUT:
                self._reading_paused = True
                self.transport.pauseProducing()

    @property
    def write_blocked(self) -> bool:
        return self._gate.paused

    def writable(self) -> None:
        """The client caught up with its output: resume events held back, then requests."""
        if self.dropped_events:
            count, self.dropped_events = self.dropped_events, 0
            self.send_event(Event("dropped", f"{count} events", {"count": count}))
        if self.table_feed is not None:
            self.table_feed.writable()
        self.release(WRITE_FULL)

    # -- requests --------------------------------------------------------------------------

    def _execute(self, text: str) -> None:
        """Run one request; its reply goes out in order, once those before it went out."""
        self._verb = self._command = None
        try:
            result = self._dispatch(text)
        except Exception:
            result = fail()
        if not isinstance(result, Deferred):
            result = succeed(result)
        request = _Request(text, self._verb, self._command)
        self._in_flight.append(request)
        result.addBoth(request.settle)
        result.addCallback(lambda _: self._send_settled())
        if self._in_flight and not self._may_overlap():
            self.hold(BUSY)

    def _may_overlap(self) -> bool:
        """Whether the next request may start before those in progress are answered: only
        STARTs overlap STARTs (their records then share a transaction), a bounded number."""
        if not self._requests or len(self._in_flight) >= MAX_OVERLAPPING:
            return False
        following = self._requests[0]
        return (
            isinstance(following, str)
            and _verb_of(following) in OVERLAPPING
            and all(request.verb in OVERLAPPING for request in self._in_flight)
        )

    def _send_settled(self) -> None:
        """Send the replies that are ready, in the order their requests came."""
        while self._in_flight and self._in_flight[0].settled:
            self._respond(self._in_flight.popleft())
        if not self._in_flight and BUSY in self._holds:
            self.release(BUSY)

    def _dispatch(self, text: str):
        verb, rest = split_verb(text)
        self._verb = verb
        if not (
            verb in ALWAYS_ALLOWED
            or self.session.authenticated
            or (self.session.local and verb in LOOPBACK_READ_ONLY)
        ):
            raise AuthRequired(self._auth_hint(verb))
        command = self._command = resolve_name(parse_arguments(verb, rest), self.core)
        result = HANDLERS[type(command)](self, command)
        return Deferred.fromCoroutine(result) if iscoroutine(result) else result

    def _auth_hint(self, verb: str) -> str:
        """Where the token is, for a client on this machine (who may be able to read it)."""
        if self.session.local and self.core.token is not None:
            where = f"the token is in {self.core.config.token_path}"
        else:
            where = "the server's operator has the token"
        return f"{verb} needs AUTH <token> first; {where}"

    def _reply_for(self, request: _Request):
        outcome = request.outcome
        if not isinstance(outcome, Failure):
            return outcome
        if outcome.check(RPMError):
            return Error(outcome.value.code, outcome.value.message)
        fault = fault_error(outcome.value)
        if fault is not None:  # the machine's doing, not a bug: say so, without a traceback
            log.warn(
                "{peer}: {code}: {message}",
                peer=self.session.peer,
                code=fault.code,
                message=fault.message,
            )
            return Error(fault.code, fault.message)
        log.failure(
            "internal error for {peer} on {command}",
            outcome,
            peer=self.session.peer,
            command=redact(request.text),
        )
        return Error(
            "internal",
            "the server hit a bug with this request; it is logged, and the server keeps serving",
        )

    def _respond(self, request: _Request) -> None:
        reply = self._reply_for(request)
        self.transport.write(reply.render(self.session.mode))
        if request.text:
            self._audit(request, reply)
            result = reply.code if isinstance(reply, Error) else "ok"
            self.core.requests[(request.verb or "?", result)] += 1
        after, self._after = self._after, []
        for action in after:
            action()

    def _audit(self, request: _Request, reply) -> None:
        failed_auth = request.verb == "AUTH" and isinstance(reply, Error)
        if request.verb in MUTATING or failed_auth:
            result = reply.render(TEXT).split(b"\r\n", 1)[0].decode("utf-8", "replace")
            self.core.audit(self.session, redact(request.text, request.command), shown(result, 200))

    def after_reply(self, action) -> None:
        """Run action once the current request's reply has been written."""
        self._after.append(action)

    # -- pushing ---------------------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        self.transport.write(data)

    def send_event(self, event: Event) -> None:
        self.send_bytes(event.render(self.session.mode))

    def send_lifecycle(self, event: Event) -> None:
        """A started/exited event: dropped (and counted) while the client is not reading."""
        if self.write_blocked:
            self.dropped_events += 1
        else:
            self.send_event(event)

    def start_watch(self, interval: float, delta: bool) -> None:
        self.stop_watch()
        self.table_feed = TableFeed(self.core.reactor, self, self.core.sampler, interval, delta)
        self.core.watching.add(self)
        self.after_reply(self.table_feed.start)

    def follow(self, pid: int, managed_id: int, offsets: dict[str, int]) -> None:
        self.core.outputs.follow(self, pid, managed_id, offsets)
        self.following.add(pid)

    def unfollow(self, pid: int) -> bool:
        self.following.discard(pid)
        return self.core.outputs.unfollow(self, pid)

    def stop_watch(self) -> None:
        if self.table_feed is not None:
            self.table_feed.stop()
            self.table_feed = None
        self.core.watching.discard(self)

"""One server as the TUI sees it: connect, watch the table as deltas into the model, and
reconnect by itself (Twisted's ClientService, backing off to at most 5 s between tries)
when it goes away, saying in the status bar why and when it tries again."""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, task
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from rpm.addresses import Address
from rpm.client import Client, ClientProtocol, CommandError, client_endpoint, handshake
from tui.model import ProcessModel

log = Logger()
RETRY_FIRST, RETRY_CAP = 0.5, 5.0  # seconds before the first retry, and at most
WATCH_REQUEST = "WATCH 1 --delta"


class HostLink:
    """The connection to one host and what the status bar says about it (a tui.link.Link)."""

    def __init__(
        self,
        reactor,
        address: Address,
        token: str | None,
        ca_file: str | None,
        model: ProcessModel,
        on_change: Callable[[], None] = lambda: None,
        label: str | None = None,
    ):
        self._reactor = reactor
        self.address = address
        self.label = label or str(address)  # a fleet file's name for it, or its address
        self.auth_failed = False  # its token was refused: it stays read-only
        self.vitals: dict | None = None  # the machine's vitals, from its latest host event
        self._token = token
        self._model = model
        self._on_change = on_change
        self.client: Client | None = None
        self.state = "connecting"
        self.problem = ""
        self.last_update: float | None = None
        self.retry_at: float | None = None
        self.on_connected: Callable[[], None] | None = None
        self.on_output: Callable[[dict], None] | None = None
        self.on_notice: Callable[[str], None] | None = None
        # backoffPolicy waits initial * factor ** attempts: 0.5 s, 1 s, 2 s, 4 s, 5 s, 5 s, ...
        self._backoff = backoffPolicy(RETRY_FIRST / 2, RETRY_CAP, factor=2.0, jitter=lambda: 0.0)
        self._service = ClientService(
            client_endpoint(reactor, address, ca_file),
            Factory.forProtocol(ClientProtocol),
            retryPolicy=self._retry_delay,
            clock=reactor,
            prepareConnection=self._prepare,
        )

    @property
    def read_only(self) -> bool:
        """Connected without a token to a server that wants one: it can look, not change."""
        return (
            self.client is not None
            and self._token is None
            and "auth-required" in self.client.greeting
        )

    def set_listener(self, on_change: Callable[[], None]) -> None:
        """Who to tell when anything shown about this host changed."""
        self._on_change = on_change

    def start(self) -> defer.Deferred:
        """Start connecting; fires when first connected and watching, or fails with the
        first attempt's error (the service goes on trying either way, until stop())."""
        self._service.startService()
        outcome = self._await_attempt()
        # Told a turn later, outside ClientService's own handling of the attempt, so the
        # caller may stop() at once.
        return outcome.addBoth(lambda result: task.deferLater(self._reactor, 0, lambda: result))

    def _await_attempt(self) -> defer.Deferred:
        """Hear how the next connection attempt ends (fails with its error)."""
        outcome = self._service.whenConnected(failAfterFailures=1)
        return outcome.addCallbacks(self._connected, self._attempt_failed)

    def _keep_listening(self) -> None:
        self._await_attempt().addErrback(lambda _: None)  # _attempt_failed has said why

    def _retry_delay(self, failed_attempts: int) -> float:
        delay = self._backoff(failed_attempts)
        self.retry_at = self._reactor.seconds() + delay
        self._on_change()
        return delay

    async def _prepare(self, protocol) -> None:
        """Each new connection: handshake (JSON mode, AUTH), then watch the table."""
        self.state, self.retry_at = "connecting", None
        self._on_change()
        try:
            client = await handshake(self._reactor, protocol.unwrapped, self.address, self._token)
        except CommandError as err:
            if err.code == "auth-failed" and self._token is not None:
                self._token, self.auth_failed = None, True  # read-only from the next try on
                log.warn("{host}: the server refused our token", host=self.label)
            raise
        client.on_event = self._event
        try:
            await client.command(WATCH_REQUEST)
        except BaseException:
            client.close()
            raise
        self.client = client

    def _connected(self, _protocol) -> None:
        self.state, self.problem = ("auth failed" if self.auth_failed else "connected"), ""
        self.client.closed.addCallback(self._lost)
        if self.on_connected is not None:
            self.on_connected()
        self._on_change()

    def _attempt_failed(self, failure):
        if not failure.check(defer.CancelledError):  # CancelledError: stop() was called
            self.problem = describe_error(failure.value)
            log.info("{host}: {problem}", host=self.label, problem=self.problem)
            self._disconnected()
            # Once ClientService is done with this failure: asked while it handles it, it
            # would drop the request.
            self._reactor.callLater(0, self._keep_listening)
        return failure

    def _lost(self, _=None) -> None:
        self.client = None
        if self._service.running:
            self.problem = "connection lost"
            self._disconnected()
            # After ClientService itself has seen the loss: asked now, it would answer with
            # the connection that just closed.
            self._reactor.callLater(0, self._keep_listening)

    def _disconnected(self) -> None:
        self.state = "disconnected"
        self._model.mark_stale(self.label)
        self._on_change()

    def _event(self, event: dict) -> None:
        kind = event.get("event")
        now = self._reactor.seconds()
        if kind == "table":
            self._model.replace_host(self.label, event["processes"], now)
        elif kind == "delta":
            self._model.apply_delta(self.label, event, now)
        elif kind == "host":
            self.vitals = event
        elif kind == "output":
            if self.on_output is not None:
                self.on_output(event)
            return
        elif kind in ("started", "exited") and self.on_notice is not None:
            self.on_notice(lifecycle_text(self.label, event))
        if kind in ("table", "delta"):
            self.last_update = now
        self._on_change()

    def command(self, line: str) -> defer.Deferred:
        """Send a request; fails with CommandError("disconnected") while not connected."""
        if self.client is None:
            return defer.fail(CommandError("disconnected", f"{self.label} is not connected"))
        return self.client.command(line)

    def stop(self) -> None:
        """Disconnect for good: no more attempts."""
        self._service.stopService().addErrback(lambda _: None)


def lifecycle_text(host: str, event: dict) -> str:
    if event["event"] == "started":
        return f"{host}: started pid {event['pid']}: {' '.join(event.get('cmdline') or ())}"
    if event.get("exit_signal"):
        how = f"killed by {event['exit_signal']}"
    elif event.get("exit_code") is not None:
        how = f"exited with code {event['exit_code']}"
    else:
        how = "ended (status unknown)"
    return f"{host}: pid {event['pid']} {how}"


def describe_error(err: BaseException) -> str:
    """A failure as one line for the status bar or the terminal."""
    if isinstance(err, CommandError):
        return f"{err.code}: {err.message}"
    if isinstance(err, defer.TimeoutError | defer.CancelledError):
        return "timed out"
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]

"""One server as the TUI sees it: connect, watch the table as deltas into the model, and
reconnect by itself with back-off (never more than 5 s between tries) when it goes away."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.logger import Logger

from rpm.addresses import Address
from rpm.client import Client, CommandError, connect
from tui.model import ProcessModel

log = Logger()
RETRY_FIRST, RETRY_CAP = 0.5, 5.0
WATCH_REQUEST = "WATCH 1 --delta"


class HostLink:
    """The connection to one host and what the status bar says about it."""

    def __init__(
        self,
        reactor,
        address: Address,
        token: str | None,
        ca_file: str | None,
        model: ProcessModel,
        on_change: Callable[[], None] = lambda: None,
    ):
        self._reactor = reactor
        self.address = address
        self.label = str(address)
        self._token, self._ca_file = token, ca_file
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
        self._delay = RETRY_FIRST
        self._retry = None
        self._stopped = False

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
        """First connection attempt; fires (or fails) when it is connected and watching."""
        return defer.Deferred.fromCoroutine(self._attempt())

    async def _attempt(self) -> None:
        self.state, self.retry_at = "connecting", None
        self._on_change()
        try:
            client = await connect(self._reactor, self.address, self._token, self._ca_file)
            client.on_event = self._event
            await client.command(WATCH_REQUEST)
        except Exception as err:
            self._failed(err)
            raise
        self.client, self.state, self.problem = client, "connected", ""
        self._delay = RETRY_FIRST
        client.closed.addCallback(self._lost)
        if self.on_connected is not None:
            self.on_connected()
        self._on_change()

    def _failed(self, err: Exception) -> None:
        self.problem = describe_error(err)
        log.info("{host}: {problem}", host=self.label, problem=self.problem)
        self._disconnected()

    def _lost(self, _=None) -> None:
        self.client = None
        if not self._stopped:
            self.problem = "connection lost"
            self._disconnected()

    def _disconnected(self) -> None:
        self.state = "disconnected"
        self._model.mark_stale(self.label)
        if not self._stopped and (self._retry is None or not self._retry.active()):
            delay, self._delay = self._delay, min(self._delay * 2, RETRY_CAP)
            self.retry_at = self._reactor.seconds() + delay
            self._retry = self._reactor.callLater(delay, self._reconnect)
        self._on_change()

    def _reconnect(self) -> None:
        self._retry = None
        self.start().addErrback(lambda _: None)  # _failed already scheduled the next try

    def _event(self, event: dict) -> None:
        kind = event.get("event")
        now = self._reactor.seconds()
        if kind == "table":
            self._model.replace_host(self.label, event["processes"], now)
        elif kind == "delta":
            self._model.apply_delta(self.label, event, now)
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
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self.client is not None:
            self.client.close()


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

"""The connection protocol over StringTransport: framing, ordering, auth, flow control."""

import errno
import json
import os
import sqlite3
from collections import Counter

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from rpm.errors import NoSuchProcess
from rpm.rows import Row
from rpm.server import handlers
from rpm.server.auth import AuthThrottle
from rpm.server.config import ServerConfig
from rpm.server.control import Stopped
from rpm.server.factory import RPMFactory
from rpm.server.framing import MAX_LINE
from rpm.server.managed.records import ManagedRecord
from rpm.server.procs.snapshot import Renderers, Snapshot

TOKEN = "correct-horse-battery-staple"
IAC, IP, DO = 255, 244, 253


class FakeSampler:
    def __init__(self):
        rows = [Row(1, 0, "root", "init", ("init",), "sleeping", 0.0, 1, 1.0, False)]
        self.latest = Snapshot(1, 0.0, rows, Renderers())

    def fresh(self):
        return defer.succeed(self.latest)


ENVIRONMENT_FAULTS = {
    776: RuntimeError("can't start new thread"),
    777: OSError(errno.EMFILE, "Too many open files"),
    778: sqlite3.OperationalError("database is locked"),
    779: OSError(errno.ENOSPC, "No space left on device", "/state/rpm.db"),
}


class FakeController:
    def __init__(self):
        self.stops = {}

    def stop(self, pid, grace, seen):
        self.stops[pid] = defer.Deferred()
        return self.stops[pid]

    def program(self, pid, seen=None):
        return None  # no managed programs here

    def signal(self, pid, signum, seen):
        if pid == 999:
            raise NoSuchProcess("no process has pid 999")
        if pid == 666:
            raise RuntimeError("a bug")
        if pid in ENVIRONMENT_FAULTS:
            raise ENVIRONMENT_FAULTS[pid]


class FakeOutputTracker:
    def unfollow(self, connection, pid=None):
        return False


class FakeCore:
    def __init__(self, token=TOKEN, idle_timeout=900.0):
        self.reactor = Clock()
        self.config = ServerConfig(
            listen=[],
            state_dir="/nonexistent",
            idle_timeout=idle_timeout,
            max_connections=3,
            max_connections_per_peer=2,
        )
        self.token = token
        self.throttle = AuthThrottle()
        self.sampler = FakeSampler()
        self.controller = FakeController()
        self.outputs = FakeOutputTracker()
        self.watching = set()
        self.audits = []
        self.requests = Counter()

    def audit(self, session, command, result):
        self.audits.append((session.authenticated, command, result))


def connect(core=None, host="127.0.0.1"):
    core = core or FakeCore()
    factory = RPMFactory(core)
    address = UNIXAddress(None) if host == "unix" else IPv4Address("TCP", host, 40000)
    protocol = factory.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    greeting = transport.value()
    transport.clear()
    return protocol, transport, greeting


def lines(transport):
    data = transport.value()
    transport.clear()
    assert data == b"" or data.endswith(b"\r\n")
    return data.decode().split("\r\n")[:-1]


def peers_of(factory):
    """open_from(host): a new TCP connection to factory from that host (protocol, transport)."""

    def open_from(host):
        protocol = factory.buildProtocol(IPv4Address("TCP", host, 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    return open_from


def test_greeting_names_the_version_and_says_when_auth_is_required():
    assert connect()[2] == b"OK rpm 1.0.0 ready auth-required\r\n"
    assert connect(FakeCore(token=None))[2] == b"OK rpm 1.0.0 ready\r\n"


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_lf_and_crlf_requests_get_crlf_replies(ending):
    protocol, transport, _ = connect()
    protocol.dataReceived(b"PING" + ending)
    assert transport.value() == b"OK pong\r\n"


def test_a_command_split_across_packets():
    protocol, transport, _ = connect()
    for piece in (b"P", b"IN", b"G\r", b"\n"):
        protocol.dataReceived(piece)
    assert lines(transport) == ["OK pong"]


def test_pipelined_commands_get_one_reply_each_in_order():
    protocol, transport, _ = connect()
    protocol.dataReceived(b"PING\nMODE json\nPING\r\nMODE text\nfrob\n")
    out = lines(transport)
    assert out[0] == "OK pong"
    assert json.loads(out[1]) == {"ok": True, "mode": "json"}
    assert json.loads(out[2]) == {"ok": True, "message": "pong"}
    assert out[3:] == [
        "OK mode text",
        "ERR unknown-command unknown command 'frob'; send HELP for the list",
    ]


def test_empty_lines_get_no_reply():
    protocol, transport, _ = connect()
    protocol.dataReceived(b"\n\r\n   \r\n\t\nPING\n")
    assert lines(transport) == ["OK pong"]


def test_a_line_of_exactly_the_limit_is_accepted_with_or_without_cr():
    protocol, transport, _ = connect()
    line = b"X" * MAX_LINE
    protocol.dataReceived(line + b"\r\n" + line + b"\n")
    out = lines(transport)
    assert len(out) == 2 and all(o.startswith("ERR unknown-command") for o in out)


def test_an_over_long_line_is_refused_and_the_connection_stays_usable():
    protocol, transport, _ = connect()
    protocol.dataReceived(b"X" * (MAX_LINE + 1) + b"\nPING\n")
    assert [o.split()[1] for o in lines(transport)] == ["line-too-long", "pong"]
    assert not transport.disconnecting


def test_an_over_long_line_arriving_in_pieces_is_discarded_to_its_end():
    protocol, transport, _ = connect()
    for _ in range(5):
        protocol.dataReceived(b"Y" * 30000)
    protocol.dataReceived(b"still the same line\nPING\n")
    out = lines(transport)
    assert out[0].startswith("ERR line-too-long")
    assert out[1:] == ["OK pong"]


def test_invalid_utf8_is_answered_and_the_connection_stays_usable():
    protocol, transport, _ = connect()
    protocol.dataReceived(b"PING \xc3\x28\nPING\n")
    out = lines(transport)
    assert out[0].startswith("ERR bad-encoding")
    assert out[1] == "OK pong"


def test_telnet_sequences_never_become_a_request():
    protocol, transport, _ = connect()
    protocol.dataReceived(bytes([IAC, IP, IAC, DO, 6]))
    assert transport.value() == b""
    protocol.dataReceived(b"PI" + bytes([IAC, DO]))
    protocol.dataReceived(bytes([1]) + b"NG\r\n")
    assert lines(transport) == ["OK pong"]


def test_replies_wait_for_a_slow_request_and_keep_their_order():
    core = FakeCore(token=None)
    protocol, transport, _ = connect(core)
    protocol.dataReceived(b"STOP 42\nPING\nPING\n")
    assert transport.value() == b"", "later requests wait for the slow one"
    core.controller.stops[42].callback(Stopped(15, 1))
    assert lines(transport) == ["OK 42 stopped by SIGTERM", "OK pong", "OK pong"]


def test_an_unknown_command_queued_behind_a_slow_request_is_answered_in_its_turn():
    core = FakeCore(token=None)
    core.supervisor = FakeSupervisor()
    protocol, transport, _ = connect(core)
    protocol.dataReceived(b"START a\nSTATUS\nSTOP 42\nSTATUS\nPING\n")
    core.supervisor.starts[0].callback(ManagedRecord(1, ("a",), None, {}, "no", 0.0, pid=100))
    core.controller.stops[42].callback(Stopped(15, 1))
    unknown = "ERR unknown-command unknown command 'STATUS'; send HELP for the list"
    assert lines(transport) == [
        "OK 100 started",
        unknown,
        "OK 42 stopped by SIGTERM",
        unknown,
        "OK pong",
    ]


class FakeSupervisor:
    """STARTs that wait for the test to commit them."""

    def __init__(self):
        self.starts = []

    def start(self, command):
        self.starts.append(defer.Deferred())
        return self.starts[-1]


def test_pipelined_starts_overlap_but_are_answered_in_order_and_nothing_else_overlaps():
    core = FakeCore(token=None)
    core.supervisor = FakeSupervisor()
    protocol, transport, _ = connect(core)
    protocol.dataReceived(b"START a\nSTART b\nSTART c\nPING\nSTART d\n")
    assert len(core.supervisor.starts) == 3, "the three STARTs run together, PING waits"
    for index in (2, 0):  # the last one is committed first: its reply still waits its turn
        record = ManagedRecord(index + 1, ("x",), None, {}, "no", 0.0, pid=100 + index)
        core.supervisor.starts[index].callback(record)
    assert lines(transport) == ["OK 100 started"]
    core.supervisor.starts[1].errback(sqlite3.OperationalError("database is locked"))
    assert lines(transport) == [
        "ERR storage the registry is locked by another process; nothing was changed",
        "OK 102 started",
        "OK pong",
    ]
    assert len(core.supervisor.starts) == 4, "the START after PING runs once PING is answered"
    assert [audit[1] for audit in core.audits] == ["START a", "START b", "START c"]


def test_input_piling_up_behind_a_slow_request_stops_reading_from_the_socket():
    core = FakeCore(token=None)
    protocol, transport, _ = connect(core)
    protocol.dataReceived(b"STOP 42\n")
    for _ in range(3):
        protocol.dataReceived(b"PING\n" * 20000)
    assert transport.producerState == "paused", "no more than MAX_PENDING_INPUT is read"
    core.controller.stops[42].callback(Stopped(15, 1))
    assert transport.producerState == "producing"
    assert lines(transport).count("OK pong") == 60000


def test_a_client_that_stops_reading_gets_no_more_replies_until_it_drains():
    protocol, transport, _ = connect()
    transport.producer.pauseProducing()
    protocol.dataReceived(b"PING\n")
    assert transport.value() == b""
    assert transport.producerState == "producing", "still reading (a TLS handshake needs it)"
    transport.producer.resumeProducing()
    assert lines(transport) == ["OK pong"]


def test_mutating_commands_need_auth_and_read_only_ones_are_open_on_loopback():
    protocol, transport, _ = connect()
    protocol.dataReceived(b"START true\nSIGNAL 5 HUP\nLIST\nLOGS 5\nHISTORY\n")
    out = lines(transport)
    assert out[0].startswith("ERR auth-required START needs AUTH")
    assert out[0].endswith(f"the token is in {protocol.core.config.token_path}")
    assert out[1].startswith("ERR auth-required")
    assert out[2] == "OK 1 processes"
    assert out[-2].startswith("ERR auth-required LOGS")
    assert out[-1].startswith("ERR auth-required HISTORY")


def test_remote_peers_need_auth_even_to_read():
    protocol, transport, _ = connect(host="192.0.2.7")
    protocol.dataReceived(b"LIST\nINFO 1\nWATCH\nPING\nHELP\n")
    out = lines(transport)
    assert [o.split()[1] for o in out[:3]] == ["auth-required"] * 3
    assert out[0].endswith("the server's operator has the token"), "no local path to strangers"
    assert out[3] == "OK pong" and out[4].startswith("OK ")


def test_unix_socket_clients_count_as_local():
    protocol, transport, _ = connect(host="unix")
    protocol.dataReceived(b"LIST\n")
    assert lines(transport)[0] == "OK 1 processes"


def test_auth_succeeds_with_the_token_and_state_stays_per_connection():
    core = FakeCore()
    first, first_transport, _ = connect(core)
    second, second_transport, _ = connect(core)
    first.dataReceived(f"AUTH {TOKEN}\nSIGNAL 999 HUP\n".encode())
    assert lines(first_transport) == [
        "OK authenticated",
        "ERR no-such-process no process has pid 999",
    ]
    second.dataReceived(b"SIGNAL 999 HUP\n")
    assert lines(second_transport)[0].startswith("ERR auth-required")


def test_three_wrong_tokens_close_the_connection_and_slow_the_peer_down():
    core = FakeCore()
    protocol, transport, _ = connect(core)
    protocol.dataReceived(b"AUTH wrong1\nAUTH wrong2\nAUTH wrong3\n")
    assert lines(transport) == []
    core.reactor.advance(0.25)
    assert lines(transport) == ["ERR auth-failed wrong token; 2 more tries on this connection"]
    core.reactor.advance(0.5)
    assert lines(transport) == ["ERR auth-failed wrong token; 1 more try on this connection"]
    core.reactor.advance(1.0)
    assert lines(transport)[0].endswith("3 failures, closing the connection")
    assert transport.disconnecting
    assert [audit[1] for audit in core.audits] == ["AUTH ***"] * 3
    guesser, guesser_transport, _ = connect(core, host="127.0.0.9")  # loopback: the same peer
    guesser.dataReceived(b"AUTH wrong4\n")
    core.reactor.advance(1.9)
    assert lines(guesser_transport) == []
    core.reactor.advance(0.1)
    assert lines(guesser_transport)[0].startswith("ERR auth-failed")


def test_the_right_token_is_never_delayed_by_anyones_failures():
    core = FakeCore()
    core.config.max_connections = core.config.max_connections_per_peer = 100
    for number in range(10):  # from the operator's own address, and from the rest of loopback
        guesser, _, _ = connect(core, host=f"127.0.0.{number % 3 + 1}")
        guesser.dataReceived(b"AUTH wrong\n")
    operator, transport, _ = connect(core)
    operator.dataReceived(f"AUTH {TOKEN}\n".encode())
    assert lines(transport) == ["OK authenticated"], "answered at once"


def test_a_bug_in_a_handler_is_an_internal_error_and_the_server_keeps_serving():
    protocol, transport, _ = connect(FakeCore(token=None))
    protocol.dataReceived(b"SIGNAL 666 HUP\nPING\n")
    out = lines(transport)
    assert out[0].startswith("ERR internal ")
    assert out[1] == "OK pong"


def test_mutating_commands_are_audited_without_secrets():
    core = FakeCore()
    protocol = connect(core)[0]
    protocol.dataReceived(f"START --env KEY=hidden true\nAUTH {TOKEN}\nSIGNAL 999 1\n".encode())
    assert core.audits == [
        (
            False,
            "START --env KEY=*** true",
            "ERR auth-required START needs AUTH <token> first; the token is in /nonexistent/token",
        ),
        (True, "SIGNAL 999 1", "ERR no-such-process no process has pid 999"),
    ]


def test_exit_says_bye_and_closes():
    protocol, transport, _ = connect()
    protocol.dataReceived(b"quit\nPING\n")
    assert lines(transport) == ["OK bye"]
    assert transport.disconnecting


def test_an_idle_connection_is_closed_after_the_timeout():
    core = FakeCore(idle_timeout=30)
    protocol, transport, _ = connect(core)
    core.reactor.advance(20)
    protocol.dataReceived(b"PING\n")
    core.reactor.advance(20)
    assert not transport.disconnecting, "activity resets the timer"
    core.reactor.advance(11)
    assert lines(transport) == ["OK pong", "* bye idle for 30 s"]
    assert transport.disconnecting


def test_connection_caps_refuse_with_err_limit():
    core = FakeCore()
    open_from = peers_of(RPMFactory(core))

    first = open_from("10.0.0.1")
    open_from("10.0.0.1")
    _, refused = open_from("10.0.0.1")
    assert refused.value().startswith(b"ERR limit 10.0.0.1 already has 2 connections")
    assert refused.disconnecting
    open_from("10.0.0.2")
    _, full = open_from("10.0.0.3")
    assert full.value().startswith(b"ERR limit the server has 3 connections open")
    first[0].connectionLost(None)
    assert open_from("10.0.0.3")[1].value().startswith(b"OK rpm ")


def test_every_command_has_one_parser_one_handler_and_help():
    from rpm import commands
    from rpm.server import helptext, parser

    assert set(parser.PARSERS) == set(commands.COMMANDS) == set(handlers.HANDLERS)
    for command in commands.COMMANDS:
        assert helptext.topic(command.VERB)[0] == f"usage: {command.HELP.usage}"
        assert isinstance(command.ACCESS, commands.Access)
    access = (commands.ALWAYS_ALLOWED, commands.LOOPBACK_READ_ONLY, commands.MUTATING)
    assert sum(map(len, access)) == len(set().union(*access)), "one access level per verb"


GUARDED_REQUESTS = {  # a well-formed request for every verb that needs AUTH
    "START": "true",
    "STOP": "4242",
    "RESTART": "4242",
    "RELOAD": "",
    "SIGNAL": "4242 HUP",
    "PAUSE": "4242",
    "RESUME": "4242",
    "LOGS": "4242",
    "FOLLOW": "4242",
    "UNFOLLOW": "4242",
    "HISTORY": "",
}


def test_the_guarded_requests_cover_every_verb_that_needs_auth():
    from rpm import commands

    needs_auth = set(commands.VERBS) - commands.ALWAYS_ALLOWED - commands.LOOPBACK_READ_ONLY
    assert set(GUARDED_REQUESTS) == needs_auth
    assert needs_auth >= commands.MUTATING
    assert not commands.MUTATING & (commands.ALWAYS_ALLOWED | commands.LOOPBACK_READ_ONLY)


@pytest.mark.parametrize("host", ["127.0.0.1", "192.0.2.7", "unix"])
def test_every_verb_that_needs_auth_is_refused_before_it_under_every_name(host):
    from rpm import commands

    core = FakeCore()
    protocol, transport, _ = connect(core, host=host)
    for verb, arguments in GUARDED_REQUESTS.items():
        names = [verb, verb.lower(), *(a for a, v in commands.ALIASES.items() if v == verb)]
        for name in names:
            protocol.dataReceived(f"{name} {arguments}\n".encode())
            (reply,) = lines(transport)
            assert reply.startswith(f"ERR auth-required {verb} "), (name, reply)
    assert core.controller.stops == {}


@pytest.mark.parametrize(
    "guess",
    [TOKEN[:-1], TOKEN[:8], TOKEN + "x", "x" + TOKEN, TOKEN.upper(), "y" * len(TOKEN), " "],
)
def test_every_wrong_shape_of_token_is_refused(guess):
    core = FakeCore()
    protocol, transport, _ = connect(core)
    protocol.dataReceived(f"AUTH {guess}\nSIGNAL 4242 HUP\n".encode())
    core.reactor.advance(1)
    replies = lines(transport)
    assert replies[0].split()[1] in ("auth-failed", "bad-argument"), replies
    assert replies[1].startswith("ERR auth-required")
    assert not protocol.session.authenticated


def test_faults_of_the_machine_get_named_codes_not_internal():
    protocol, transport, _ = connect(FakeCore(token=None))
    protocol.dataReceived(b"SIGNAL 776 HUP\nSIGNAL 777 HUP\nSIGNAL 778 HUP\nSIGNAL 779 HUP\nPING\n")
    assert lines(transport) == [
        "ERR limit the server cannot start a thread: its user runs as many processes as it may "
        "(ulimit -u), or the system as many as it can; try again once some end",
        "ERR limit the server has no file descriptors left (too many open files); "
        "try again once some connections close",
        "ERR storage the registry is locked by another process; nothing was changed",
        "ERR storage the disk is full: /state/rpm.db",
        "OK pong",
    ]


def test_a_connection_is_told_when_no_file_descriptors_are_left(monkeypatch):
    from rpm.server import factory

    monkeypatch.setattr(factory, "descriptors_left", lambda: factory.DESCRIPTORS_KEPT - 1)
    _, transport, greeting = connect()
    assert greeting.startswith(b"ERR limit the server is out of file descriptors")
    assert transport.disconnecting
    monkeypatch.setattr(factory, "descriptors_left", lambda: factory.DESCRIPTORS_KEPT)
    assert connect()[2].startswith(b"OK rpm ")


def test_descriptors_left_counts_this_process():
    from rpm.server.faults import descriptors_left

    before = descriptors_left()
    with open(os.devnull) as _held:
        assert descriptors_left() == before - 1


# -- what the protocol counts, logs and tells (found unguarded by `make mutate`) ---------------


@pytest.fixture
def logged():
    from twisted.logger import globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def formatted(events) -> list[str]:
    from twisted.logger import formatEvent

    return [formatEvent(event) for event in events]


def test_requests_are_counted_by_verb_and_result_and_framing_errors_are_not():
    core = FakeCore(token=None)
    protocol, _, _ = connect(core)
    protocol.dataReceived(b"PING\nSIGNAL 999 HUP\n" + b"x" * (MAX_LINE + 5) + b"\nPING\n")
    assert core.requests == Counter({("PING", "ok"): 2, ("SIGNAL", "no-such-process"): 1})


def test_a_bug_is_logged_with_the_peer_and_the_redacted_request(logged):
    protocol, transport, _ = connect(FakeCore(token=None))
    protocol.dataReceived(b"SIGNAL 666 HUP\n")
    assert lines(transport) == [
        "ERR internal the server hit a bug with this request; it is logged, "
        "and the server keeps serving"
    ]
    assert "internal error for 127.0.0.1:40000 on SIGNAL 666 HUP" in formatted(logged)


def test_a_fault_of_the_machine_is_logged_once_with_its_code(logged):
    protocol, _, _ = connect(FakeCore(token=None))
    protocol.dataReceived(b"SIGNAL 779 HUP\n")
    assert "127.0.0.1:40000: storage: the disk is full: /state/rpm.db" in formatted(logged)


def test_connections_are_logged_as_they_come_and_go(logged):
    protocol, _, _ = connect()
    protocol.connectionLost(None)
    assert formatted(logged)[-2:] == [
        "connection from 127.0.0.1:40000",
        "connection from 127.0.0.1:40000 closed",
    ]


def test_the_idle_goodbye_in_json_gives_its_reason():
    core = FakeCore(token=None, idle_timeout=30)
    protocol, transport, _ = connect(core)
    protocol.dataReceived(b"MODE json\n")
    transport.clear()
    core.reactor.advance(31)
    assert json.loads(transport.value()) == {"event": "bye", "reason": "idle-timeout"}


def test_events_dropped_while_the_client_did_not_read_are_counted_once_it_reads():
    from rpm.wire import Event

    protocol, transport, _ = connect(FakeCore(token=None))
    transport.producer.pauseProducing()
    for pid in (1, 2, 3):
        protocol.send_lifecycle(Event("exited", f"{pid}", {"pid": pid}))
    assert transport.value() == b""
    transport.producer.resumeProducing()
    assert lines(transport) == ["* dropped 3 events"]
    transport.producer.pauseProducing()
    transport.producer.resumeProducing()
    assert lines(transport) == [], "counted afresh"
    protocol.dataReceived(b"MODE json\n")
    transport.clear()
    transport.producer.pauseProducing()
    protocol.send_lifecycle(Event("exited", "4", {"pid": 4}))
    transport.producer.resumeProducing()
    assert json.loads(transport.value()) == {"event": "dropped", "count": 1}


def test_the_gate_starts_open_and_registers_as_a_push_producer():
    protocol, transport, _ = connect()
    assert transport.streaming is True and not protocol.write_blocked


def test_input_ended_closes_once_every_reply_is_out_but_not_while_streaming():
    protocol, transport, _ = connect(FakeCore(token=None))
    protocol.dataReceived(b"PING")
    assert not transport.disconnecting
    protocol.readConnectionLost()
    assert lines(transport) == ["OK pong"] and transport.disconnecting
    protocol, transport, _ = connect(FakeCore(token=None))
    protocol.following.add(4242)  # as FOLLOW leaves it
    protocol.readConnectionLost()
    assert not transport.disconnecting, "a follower keeps streaming"


def test_at_most_64_starts_run_together():
    from rpm.server.protocol import MAX_OVERLAPPING

    core = FakeCore(token=None)
    core.supervisor = FakeSupervisor()
    protocol, _, _ = connect(core)
    protocol.dataReceived(b"START x\n" * (MAX_OVERLAPPING + 1))
    assert len(core.supervisor.starts) == MAX_OVERLAPPING == 64
    for number, started in enumerate(core.supervisor.starts, 1):
        started.callback(ManagedRecord(number, ("x",), None, {}, "no", 0.0, pid=100 + number))
    assert len(core.supervisor.starts) == MAX_OVERLAPPING + 1, "the next batch"


def test_a_closed_connection_stops_following_and_frees_its_peers_slot():
    core = FakeCore()
    unfollowed = []
    core.outputs.unfollow = lambda connection, pid=None: unfollowed.append(connection)
    open_from = peers_of(RPMFactory(core))

    first, _ = open_from("10.0.0.1")
    open_from("10.0.0.1")
    first.connectionLost(None)
    assert unfollowed == [first]
    assert open_from("10.0.0.1")[1].value().startswith(b"OK rpm "), "its slot is free again"


class PeerCredentials(StringTransport):
    """A unix-socket transport whose peer is uid 1234."""

    def getHandle(self):
        import struct
        from types import SimpleNamespace

        return SimpleNamespace(getsockopt=lambda *args: struct.pack("3i", 99, 1234, 1234))


def test_auth_failures_are_throttled_per_unix_user_and_per_tcp_host():
    core = FakeCore()
    factory = RPMFactory(core)
    local = factory.buildProtocol(UNIXAddress(None))
    local.makeConnection(PeerCredentials())
    assert local.session.throttle_key == "unix uid 1234"
    remote = factory.buildProtocol(IPv4Address("TCP", "10.0.0.9", 1))
    remote.makeConnection(StringTransport())
    assert remote.session.throttle_key == "10.0.0.9"


def test_an_audited_result_is_cut_to_200_characters():
    core = FakeCore(token=None)
    protocol, _, _ = connect(core)
    protocol.dataReceived(b"SIGNAL 999999 " + b"9" * 300 + b"\n")
    [(_, _, result)] = core.audits
    assert len(result) == 200 and result.endswith("\u2026")

"""Properties that hold for any input: the parser only raises protocol errors, escaping
leaves nothing raw, and the protocol answers every line (or closes cleanly), never leaks a
traceback, and never starts anything but the exact argv of a complete START line."""

from __future__ import annotations

import json
import signal
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer

from rpm import commands
from rpm.errors import NotManaged, Protected, RPMError
from rpm.server import parser
from rpm.server.control import Stopped
from rpm.server.managed.program import Names
from rpm.server.managed.records import ManagedRecord
from rpm.server.telnet import TelnetFilter
from rpm.wire import escape_text, json_line
from tests.hostile import request_text, stream
from tests.unit.test_protocol import FakeCore, connect

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.one_of(request_text(), st.text(max_size=200)))
def test_the_parser_only_ever_raises_protocol_errors(line):
    try:
        command = parser.parse_line(line)
    except RPMError as err:
        assert err.code in {"unknown-command", "bad-argument"}
        assert "\n" not in escape_text(err.message)
    else:
        assert command.VERB in commands.VERBS


@PROPERTY
@given(st.text())
def test_escaped_text_has_no_control_or_invisible_characters(text):
    escaped = escape_text(text)
    assert escaped.isprintable()
    assert escape_text(escaped) == escaped


@PROPERTY
@given(st.dictionaries(st.text(max_size=5), st.text()))
def test_json_lines_are_ascii_single_lines(data):
    line = json_line(data)
    assert line.endswith(b"\r\n") and b"\n" not in line[:-2] and b"\r" not in line[:-2]
    assert all(32 <= byte < 127 for byte in line[:-2])
    assert json.loads(line) == data


class RecordingSupervisor:
    """Records what it is asked to start instead of starting anything."""

    def __init__(self):
        self.started = []
        self.names = Names()  # no program has a name here: a name is refused

    def start(self, command):
        self.started.append(command)
        pid = 4_000_000 + len(self.started)
        record = ManagedRecord(len(self.started), command.argv, command.cwd, {}, "no", 0.0, pid=pid)
        return defer.succeed(record)

    def record_for_pid(self, pid):
        return defer.succeed(None)


class ImmediateController:
    """Signals nothing; answers at once, as if every target had obeyed."""

    def program(self, pid, seen=None):
        return None  # no managed programs here

    def stop(self, pid, grace, seen):
        return defer.succeed(Stopped(signal.SIGTERM, 1))

    def signal(self, pid, signum, seen):
        if pid <= 1:
            raise Protected(f"pid {pid} is protected")

    def pause(self, pid, seen):
        self.signal(pid, signal.SIGSTOP, seen)
        return defer.succeed(None)

    def resume(self, pid, seen):
        self.signal(pid, signal.SIGCONT, seen)

    def restart(self, pid, seen):
        return defer.fail(NotManaged(f"pid {pid} is not a program this server started"))


class HostileCore(FakeCore):
    """Everything a handler may touch, with no threads, processes or files behind it."""

    def __init__(self):
        super().__init__(token=None)
        self.supervisor = RecordingSupervisor()
        self.controller = ImmediateController()
        self.store = SimpleNamespace(history=lambda count: defer.succeed([]))
        self.flush_audit = lambda: None
        self.logfiles = SimpleNamespace(sizes=lambda managed_id: {}, tail=lambda *args: [])
        self.outputs.follow = lambda *args: None
        self.sampler.invalidate = lambda: None
        self.sampler.watch = self.sampler.unwatch = lambda *args: None
        self.in_thread = defer.maybeDeferred
        self.declared = None  # no programs file: RELOAD is refused


def complete_start_commands(data: bytes) -> list:
    """Every START a correct server could run for this input: complete, well-framed lines."""
    data = TelnetFilter().feed(data)
    found = []
    for raw in data.split(b"\n")[:-1]:
        line = raw.removesuffix(b"\r")
        if len(line) > 65536:
            continue
        try:
            command = parser.parse_line(line.decode("utf-8"))
        except (UnicodeDecodeError, RPMError):
            continue
        if isinstance(command, commands.Start):
            found.append(command)
    return found


def nonblank_lines(data: bytes) -> int:
    """How many requests a byte stream holds: complete lines not blank once telnet-filtered."""
    lines = TelnetFilter().feed(data).split(b"\n")[:-1]
    return sum(1 for line in lines if line.removesuffix(b"\r").strip(b" \t"))


@PROPERTY
@given(stream())
def test_every_line_gets_one_reply_and_only_parsed_starts_run(packets):
    core = HostileCore()
    protocol, transport, _ = connect(core)
    protocol.dataReceived(b"MODE json\n")
    for packet in packets:
        protocol.dataReceived(packet)
    protocol.dataReceived(b"\nPING\n")
    output = transport.value()
    assert b"Traceback" not in output
    lines = output.split(b"\r\n")
    assert lines[-1] == b"", "every line ends with CRLF"
    messages = [json.loads(line) for line in lines[:-1]]
    replies = [message for message in messages if "event" not in message]
    assert not any(reply.get("error") == "internal" for reply in replies)
    data = b"MODE json\n" + b"".join(packets) + b"\nPING\n"
    if not transport.disconnecting:
        assert len(replies) == nonblank_lines(data), "one reply per request"
        assert replies[-1] == {"ok": True, "message": "pong"}, "the connection is still usable"
    allowed = complete_start_commands(data)
    for command in core.supervisor.started:
        assert command in allowed

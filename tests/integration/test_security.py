"""Safe to expose: TLS, limits, the signal scope, capped logs, the audit trail, escaping."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time

import psutil
import pytest
import pytest_twisted
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from rpm.addresses import parse_address
from rpm.client import connect as client_connect
from rpm.server.managed import rotation
from tests.certs import make_certificates
from tests.servers import run_tui_once
from tests.support import LineClient, connect, pid_alive, sleep, start, wait_for


def tls_listener(certificates) -> str:
    return (
        f"ssl:0:privateKey={certificates['key']}:certKey={certificates['cert']}:interface=127.0.0.1"
    )


@pytest.fixture
def certificates(tmp_path):
    return make_certificates(tmp_path)


@pytest.fixture
def tls_server(make_server, certificates):
    listen = tls_listener(certificates)
    return make_server(listen=[listen])


@pytest_twisted.ensureDeferred
async def test_tls_listener_verified_against_its_ca(tls_server, certificates):
    address = parse_address(f"tls://localhost:{tls_server.port}")
    client = await client_connect(reactor, address, tls_server.token, str(certificates["ca"]))
    assert client.greeting.startswith("OK rpm ")
    assert (await client.command("PING"))["message"] == "pong"
    assert (await client.command("LIST --managed"))["processes"] == []
    client.close()


@pytest_twisted.ensureDeferred
async def test_tls_refuses_a_server_the_ca_did_not_sign(tls_server, tmp_path):
    (tmp_path / "other").mkdir()
    other = make_certificates(tmp_path / "other", ca_name="another CA")
    address = parse_address(f"tls://localhost:{tls_server.port}")
    with pytest.raises(SSL.Error, match="certificate verify failed"):
        await client_connect(reactor, address, tls_server.token, str(other["ca"]), timeout=5)


@pytest_twisted.ensureDeferred
async def test_a_watcher_that_stops_reading_is_sent_one_table_not_a_queue(make_server):
    server = make_server(no_auth=True)
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, then silence
    reader.connect(("127.0.0.1", server.port))
    try:
        reader.sendall(b"WATCH 0.1\n")
        await wait_for(lambda: server.core.watching, timeout=5)
        connection = next(iter(server.core.watching))
        # a fixed send buffer: the kernel's auto-tuned one takes tens of seconds to fill
        connection.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        await wait_for(lambda: connection.write_blocked, timeout=30)
        table = len(server.core.sampler.latest.table_event("text"))
        queued = []
        for _ in range(10):  # a few more seconds of ticks: nothing piles up
            await sleep(0.3)
            queued.append(len(connection.transport.dataBuffer) + connection.transport._tempDataLen)
        # Twisted pauses its producer past 64 KiB buffered. The kernel may still take the
        # whole buffer (its send buffer grows); the watcher then refills it with newer tables
        # up to the limit and no further, instead of growing tick by tick.
        bound = 64 * 1024 + 2 * table  # tables differ by a few rows as host processes come and go
        assert max(queued) <= bound, f"the queue grew while blocked: {queued}"
        # the newest table is held back for when it drains
        await wait_for(lambda: connection.write_blocked and connection.table_feed._due, timeout=5)
        reader.setblocking(False)
        received = b""
        deadline = time.monotonic() + 60  # a generous bound: busy machines are slow
        while connection.write_blocked or len(received) < queued[-1]:
            await sleep(0.05)
            with contextlib.suppress(BlockingIOError):
                received += reader.recv(1 << 20)
            assert time.monotonic() < deadline, "the watcher never caught up"
        assert received.startswith(b"OK rpm ") and b"OK watching" in received
    finally:
        reader.close()


@pytest_twisted.ensureDeferred
async def test_idle_connections_are_closed_but_watchers_are_not(make_server):
    server = make_server(idle_timeout=1.0)
    idle = await connect(server.port, server.token)
    watching = await connect(server.port, server.token)
    assert await watching.request("WATCH 0.5") == "OK watching"
    assert await idle.line(timeout=5) == "* bye idle for 1 s"
    assert await idle.line(timeout=5) is None
    await sleep(1.5)
    assert await watching.request("PING") == "OK pong"


@pytest_twisted.ensureDeferred
async def test_connection_caps_refuse_extra_connections_and_serve_the_rest(make_server):
    server = make_server(max_connections_per_peer=2, max_connections=5)
    first = await connect(server.port)
    second = await connect(server.port)
    third = LineClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", server.port), third)
    line = await third.line()
    assert line.startswith("ERR limit 127.0.0.1 already has 2 connections")
    assert await third.line() is None
    assert await first.request("PING") == "OK pong"
    assert await second.request("PING") == "OK pong"
    second.transport.loseConnection()
    await second.closed
    await sleep(0.1)
    assert (await connect(server.port)).greeting.startswith("OK rpm ")


@pytest_twisted.ensureDeferred
async def test_max_managed(make_server):
    server = make_server(max_managed=1)
    client = await connect(server.port, server.token)
    await start(client, "sleep 300")
    reply = await client.request("START sleep 300")
    assert reply.startswith("ERR limit 1 managed processes are running")


@pytest_twisted.ensureDeferred
async def test_managed_scope_touches_only_what_the_server_started(make_server, spawned):
    server = make_server(signal_scope="managed")
    foreign = subprocess.Popen(["sleep", "300"])
    spawned.append(foreign.pid)
    client = await connect(server.port, server.token)
    for verb in ("STOP", "PAUSE", "SIGNAL"):
        line = f"{verb} {foreign.pid}" + (" HUP" if verb == "SIGNAL" else "")
        reply = await client.request(line)
        assert reply.startswith("ERR not-permitted") and "--signal-scope managed" in reply
    assert foreign.poll() is None
    pid = await start(client, "sh -c 'sleep 300 & wait'")
    child = (await wait_for(lambda: psutil.Process(pid).children(), timeout=5))[0]
    assert await client.request(f"SIGNAL {child.pid} TERM") == f"OK {child.pid} sent SIGTERM"
    await wait_for(lambda: not pid_alive(child.pid))


def disk_usage(logs: str, managed_id: int) -> tuple[int, int]:
    """(real blocks, apparent size) in bytes of a program's stdout and stderr files, live
    and rotated."""
    blocks = apparent = 0
    for name in (
        f"{managed_id}.{stream}{suffix}" for stream in ("out", "err") for suffix in ("", ".1")
    ):
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(f"{logs}/{name}")
            blocks, apparent = blocks + info.st_blocks * 512, apparent + info.st_size
    return blocks, apparent


def written(logs: str, managed_id: int) -> int:
    """How much a program wrote to stdout, counting what rotations dropped."""
    return rotation.stream_size(f"{logs}/{managed_id}.out")


CHATTY = (  # about 5 MB/s of 1000-byte lines
    "python3 -c \"import sys, time; [(sys.stdout.write('x' * 999 + chr(10)), sys.stdout.flush(), "
    'time.sleep(0.0002)) for _ in iter(int, 1)]"'
)
BOUND = 1024 * 1024  # what may be on disk beyond twice the cap


@pytest_twisted.ensureDeferred
async def test_a_chatty_child_stays_within_its_log_cap(make_server):
    cap = 256 * 1024
    server = make_server(log_max_bytes=cap)
    client = await connect(server.port, server.token)
    pid = await start(client, CHATTY)
    logs = server.state_dir + "/logs"
    await wait_for(lambda: written(logs, 1) > 8 * cap, timeout=60)
    assert pid_alive(pid), "the child keeps running"
    assert max(disk_usage(logs, 1)) <= 2 * cap + BOUND
    header, lines = await client.request(f"LOGS {pid} 3", body=True)
    assert (header, lines) == ("OK 3 lines", ["x" * 999] * 3)
    header, lines = await client.request(f"LOGS {pid} 100000", body=True)
    assert header == f"OK {len(lines)} lines (older output was cut away by the log cap)"
    assert await client.request(f"STOP {pid}") == f"OK {pid} stopped by SIGTERM"


@pytest.mark.parametrize("command", ["yes", "sh -c 'cat /dev/zero | tr \"\\\\000\" x'"])
@pytest_twisted.ensureDeferred
async def test_even_the_fastest_writer_cannot_pass_the_cap(make_server, command):
    cap = 1024 * 1024
    server = make_server(log_max_bytes=cap)
    client = await connect(server.port, server.token)
    pid = await start(client, command)
    logs = server.state_dir + "/logs"
    usage = []
    while written(logs, 1) < 50 * cap:  # samples while it writes 50 times the cap
        usage.append(disk_usage(logs, 1))
        await sleep(0.01)
        assert len(usage) < 6000, f"it wrote only {written(logs, 1)} bytes in a minute"
    blocks, apparent = max(u[0] for u in usage), max(u[1] for u in usage)
    assert blocks <= 2 * cap + BOUND and apparent <= 2 * cap + BOUND, usage[-5:]
    assert await client.request(f"STOP {pid}") == f"OK {pid} stopped by SIGTERM"


def counted_lines(path: str) -> list[int]:
    """The numbers of a counter's lines in its log file, in order ([] before it exists)."""
    with contextlib.suppress(FileNotFoundError), open(path) as log:
        return [int(line.split()[1]) for line in log if line.startswith("line ")]
    return []


def writes_to(process: psutil.Process, path: str) -> bool:
    """Whether process is a shared log writer with path open (other children may be zombies)."""
    try:
        return "--serve" in process.cmdline() and path in [f.path for f in process.open_files()]
    except psutil.Error:
        return False


@pytest_twisted.ensureDeferred
async def test_a_killed_log_writer_costs_no_program_and_no_line(make_server, tmp_path):
    server = make_server()
    client = await connect(server.port, server.token)
    gate = tmp_path / "go"
    counter = (
        f"i=0; while :; do echo line $i; i=$((i+1)); "
        f"[ $i = 5 ] && while [ ! -e {gate} ]; do sleep 0.02; done; done"
    )
    pid = await start(client, f"sh -c '{counter}'")
    log = server.state_dir + "/logs/1.out"
    await wait_for(lambda: counted_lines(log) == list(range(5)))  # then it waits at the gate
    [writer] = [child for child in psutil.Process().children() if writes_to(child, log)]
    writer.kill()  # this test's server's own log writer, by pid, with nothing in hand
    writer.wait(10)
    gate.touch()
    await wait_for(lambda: len(counted_lines(log)) >= 1000)
    assert pid_alive(pid), "no SIGPIPE: the server held the pipes open for a new writer"
    numbers = counted_lines(log)
    assert numbers == list(range(len(numbers))), "no line lost"
    assert await client.request(f"STOP {pid}") == f"OK {pid} stopped by SIGTERM"


@pytest_twisted.ensureDeferred
async def test_every_mutating_command_is_audited_and_survives_a_restart(make_server):
    server = make_server()
    anonymous = await connect(server.port)
    assert (await anonymous.request("START sleep 1")).startswith("ERR auth-required")
    assert (await anonymous.request("AUTH nope")).startswith("ERR auth-failed")
    client = await connect(server.port, server.token)
    pid = await start(client, "--env SECRET=hunter2 -- sleep 300")
    await client.request(f"STOP {pid}")
    _, lines = await client.request("HISTORY 10", body=True)
    assert [line.split(" ", 4)[3:] for line in lines] == [
        [
            "anon",
            "START sleep 1 -> ERR auth-required START needs AUTH <token> first; the token is "
            f"in {server.state_dir}/token",
        ],
        ["anon", "AUTH *** -> ERR auth-failed wrong token; 2 more tries on this connection"],
        ["auth", "START --env SECRET=*** sleep 300 -> OK " + f"{pid} started"],
        ["auth", f"STOP {pid} -> OK {pid} stopped by SIGTERM"],
    ]
    assert "hunter2" not in json.dumps(lines) and server.token not in json.dumps(lines)
    await server.service.stopService()
    again = make_server(state_dir=server.state_dir)
    client = await connect(again.port, again.token)
    _, lines = await client.request("HISTORY 2", body=True)
    assert lines[-1].endswith(f"STOP {pid} -> OK {pid} stopped by SIGTERM")


@pytest_twisted.ensureDeferred
async def test_control_characters_from_processes_never_reach_a_text_client_raw(server):
    client = await connect(server.port, server.token)
    pid = await start(
        client, "sh -c 'printf \"a\\033[31mb\\007\\n\"; sleep 300' 'x\x1b]0;owned\x07'"
    )
    await sleep(0.5)
    client.send("LIST --managed")
    client.send(f"INFO {pid}")
    client.send(f"LOGS {pid}")
    client.send("PING")
    raw = []
    while (line := await client.line()) != "OK pong":
        raw.append(line)
    text = "\n".join(raw)
    assert not any(ord(char) < 32 or ord(char) == 127 for char in text.replace("\n", ""))
    assert "a\\x1b[31mb\\x07" in text and "x\\x1b]0;owned\\x07" in text


def test_the_tui_connects_over_tls_verifying_the_certificate(run_server, certificates, terminal):
    listen = tls_listener(certificates)
    server = run_server("--listen", listen)
    tui = terminal(
        f"tls://localhost:{server.port}",
        "--ca",
        str(certificates["ca"]),
        "--token-file",
        str(server.state_dir / "token"),
    )
    tui.wait_for(f"tls://localhost:{server.port} connected")
    tui.send("q")
    assert tui.exit_status() == 0


def test_the_tui_refuses_an_unverified_server(run_server, certificates, tmp_path):
    listen = tls_listener(certificates)
    server = run_server("--listen", listen)
    result = run_tui_once(tmp_path, f"tls://localhost:{server.port}")
    assert result.returncode == 1
    assert result.stderr.startswith(f"rpm-tui: cannot reach tls://localhost:{server.port}: ")
    assert "certificate verify failed" in result.stderr

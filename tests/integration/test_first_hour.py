"""What a new user meets first: nc scripts that half-close, LIST right after STOP, and
programs with a restart policy addressed by the pid START returned."""

from __future__ import annotations

import socket
import subprocess

import psutil
import pytest
import pytest_twisted

from tests.support import connect, kill_tree, pid_alive, sleep, start, wait_for

STUBBORN = "sh -c 'trap \"\" TERM; while :; do sleep 0.1; done'"


def half_close(port: int, text: str, timeout: float = 15.0) -> list[str]:
    """Send text, shut down our sending side as `nc -N` does, and read until the server
    closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(text.encode())
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.decode().split("\r\n")[:-1]


@pytest.mark.parametrize("ending", ["", "QUIT\n"], ids=["eof", "quit"])
def test_every_request_is_answered_when_the_client_half_closes(run_server, ending):
    server = run_server()
    lines = half_close(server.port, f"AUTH {server.token}\nSTART sleep 313\n" + ending)
    pid = int(lines[2].split()[1])
    script = f"AUTH {server.token}\nLOGS {pid} 3\nINFO {pid}\nHISTORY 2\nLIST sleep 313\n"
    lines = half_close(server.port, script + ending)
    heads = [line for line in lines if line.startswith(("OK", "ERR"))][1:]  # after the greeting
    assert heads[:4] == ["OK authenticated", "OK 0 lines", heads[2], heads[3]]
    assert heads[2].endswith(" fields") and heads[3].endswith(" records")
    assert heads[4] == "OK 1 processes"
    assert lines[lines.index("OK 1 processes") + 2].split()[0] == str(pid)
    assert heads[5:] == (["OK bye"] if ending else [])


def test_an_unterminated_last_line_is_answered_at_end_of_input(run_server):
    server = run_server()
    assert half_close(server.port, "PING\nPING")[1:] == ["OK pong", "OK pong"]


def test_a_watcher_that_half_closes_keeps_receiving_events(run_server):
    server = run_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(b"MODE json\nWATCH 0.2\n")
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while received.count(b'"event":"table"') < 2:
            chunk = sock.recv(1 << 20)
            assert chunk, "the server closed a watching connection"
            received += chunk


async def json_client_while_watched(server):
    """An authenticated JSON client, while another connection watches the table (as rpm-tui
    does, so the table is sampled all along, also while a STOP runs)."""
    watcher = await connect(server.port)
    assert await watcher.request("WATCH 0.1") == "OK watching"
    client = await connect(server.port, server.token)
    await client.request("MODE json")
    return client


async def listed_pids(client) -> list[int]:
    return [row["pid"] for row in (await client.json("LIST"))["processes"]]


async def listed(client, pid: int) -> bool:
    reply = await client.json("LIST --managed")
    return any(row["pid"] == pid for row in reply["processes"])


@pytest_twisted.ensureDeferred
async def test_list_right_after_a_stop_that_needed_sigkill_no_longer_shows_it(server):
    client = await json_client_while_watched(server)
    for _ in range(3):
        reply = await client.json(f"START {STUBBORN}")
        pid = reply["pid"]
        assert await listed(client, pid)
        await wait_for(lambda pid=pid: psutil.Process(pid).children())  # the trap is set now
        reply = await client.json(f"STOP {pid} 1.5")
        assert reply["signal"] == "SIGKILL"
        assert not await listed(client, pid)


@pytest_twisted.ensureDeferred
async def test_list_right_after_a_plain_stop_no_longer_shows_it(server):
    client = await json_client_while_watched(server)
    pid = (await client.json("START sleep 300"))["pid"]
    assert await listed(client, pid)
    assert (await client.json(f"STOP {pid}"))["signal"] == "SIGTERM"
    assert not await listed(client, pid)


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


@pytest_twisted.ensureDeferred
async def test_list_right_after_stopping_a_process_started_elsewhere_no_longer_shows_it(server):
    client = await json_client_while_watched(server)
    # A stubborn process whose parent (a shell waiting for it) reaps it at once.
    parent = subprocess.Popen(["sh", "-c", f"{STUBBORN} & wait"], start_new_session=True)
    try:
        await wait_for(lambda: psutil.Process(parent.pid).children(), timeout=10)
        pid = psutil.Process(parent.pid).children()[0].pid
        while pid not in await listed_pids(client):  # a table at most a second old
            await sleep(0.1)
        assert (await client.json(f"STOP {pid} 1.5"))["signal"] == "SIGKILL"
        assert pid not in await listed_pids(client)
    finally:
        kill_tree(parent.pid)
        parent.wait(timeout=10)


async def crash_once(client, server, command: str) -> tuple[int, int]:
    """START a program that restarts always, kill its first run, and wait for its second:
    (the pid START returned, the pid of the run now going)."""
    first = await start(client, f"--restart always {command}")
    supervisor = server.core.supervisor
    program = supervisor.by_pid(first)
    client.send(f"SIGNAL {first} KILL")
    assert (await client.reply()).startswith(f"OK {first} sent")
    await wait_for(lambda: program.running and program.record.pid != first, timeout=15)
    return first, program.record.pid


@pytest_twisted.ensureDeferred
async def test_the_pid_start_returned_stops_a_program_after_it_restarted(server):
    client = await connect(server.port, server.token)
    first, second = await crash_once(client, server, "sleep 300")
    _, body = await client.request(f"INFO {first}", body=True)
    assert f"pid: {second}" in body
    assert await client.request(f"STOP {first}") == f"OK {first} stopped by SIGTERM"
    assert not pid_alive(second)
    assert not server.core.supervisor.by_pid(second).restarting


@pytest_twisted.ensureDeferred
async def test_a_program_waiting_to_restart_is_listed_and_stop_cancels_it_with_ok(server):
    client = await connect(server.port, server.token)
    pid = await start(client, "--restart always sh -c 'exit 3'")
    program = server.core.supervisor.by_pid(pid)
    await wait_for(lambda: program.restarting and program.record.restarts >= 1, timeout=15)
    await client.request("MODE json")
    rows = (await client.json("LIST --managed"))["processes"]
    waiting = [row for row in rows if row["status"] == "restarting"]
    assert len(waiting) == 1 and waiting[0]["cmdline"] == ["sh", "-c", "exit 3"]
    assert waiting[0]["restart_at"] > waiting[0]["started"]
    info = (await client.json(f"INFO {pid}"))["process"]
    assert info["status"] == "restarting" and info["restart_at"] == pytest.approx(
        waiting[0]["restart_at"], abs=1
    )
    reply = await client.json(f"STOP {pid}")
    assert reply["ok"] and reply["signal"] is None and "restart is cancelled" in reply["message"]
    assert not program.restarting
    assert (await client.json("LIST --managed"))["processes"] == []


@pytest_twisted.ensureDeferred
async def test_signal_pause_and_logs_follow_the_program_by_its_first_pid(server):
    client = await connect(server.port, server.token)
    first, second = await crash_once(client, server, "sh -c 'echo ran $$; exec sleep 300'")
    assert await client.request(f"PAUSE {first}") == f"OK {first} paused"
    await wait_for(lambda: process_state(second) == "T")
    assert await client.request(f"RESUME {first}") == f"OK {first} resumed"
    for _ in range(100):  # the second run's line reaches the log in its own time
        _, lines = await client.request(f"LOGS {first}", body=True)
        if f"ran {second}" in lines:
            break
        await sleep(0.1)
    assert lines[-1] == f"ran {second}"
    assert await client.request(f"STOP {first}") == f"OK {first} stopped by SIGTERM"


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "where", ["", "--cwd / ", "--limit nofile=64 "], ids=["spawned", "forked", "with-limits"]
)
async def test_a_script_whose_interpreter_is_missing_is_refused_naming_it(server, tmp_path, where):
    script = tmp_path / "deploy.sh"
    script.write_text("#!/bin/bahs\necho typo in the interpreter\n")
    script.chmod(0o755)
    client = await connect(server.port, server.token)
    assert await client.request(f"START {where}{script}") == (
        f"ERR spawn-failed cannot start '{script}': its interpreter '/bin/bahs' (its #! line) "
        "does not exist"
    )


@pytest_twisted.ensureDeferred
async def test_a_limit_the_program_cannot_take_is_refused_before_it_runs(server):
    with open("/proc/sys/fs/nr_open") as nr_open:
        too_many = int(nr_open.read()) + 1
    client = await connect(server.port, server.token)
    reply = await client.request(f"START --limit nofile={too_many} sleep 30")
    assert reply.startswith(
        f"ERR spawn-failed cannot start 'sleep': its limit nofile={too_many} cannot be set: "
    ), reply
    assert await client.request("LIST --managed sleep") == "OK 0 processes"

"""A real server on an ephemeral port, real child processes, text and JSON mode."""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol

from rpm.server.managed.program import own_session
from rpm.server.managed.session import ChildRefused, spawn_in_session
from tests.support import at_least, connect, pid_alive, sleep, start, wait_for, zombie_children

ROW_KEYS = {"pid", "ppid", "user", "name", "cmdline", "status", "cpu", "rss", "started", "managed"}


def read_log(server, managed_id: int, stream: str = "out") -> str:
    """A program's log file as it is now ("" until its log writer has created it)."""
    try:
        with open(f"{server.state_dir}/logs/{managed_id}.{stream}") as log:
            return log.read()
    except FileNotFoundError:
        return ""


async def start_script(client, server, script: str, marker: str) -> int:
    """Start `sh -c script` as managed process 1 and wait until its log shows marker."""
    pid = await start(client, f"sh -c {json.dumps(script)}")
    await wait_for(lambda: marker in read_log(server, 1))
    return pid


async def listed_pids(client, args: str = "") -> list[int]:
    head, body = await client.request(f"LIST {args}".strip(), body=True)
    assert head.startswith("OK ") and head.endswith(" processes")
    assert body[0].split()[0] == "PID"
    assert int(head.split()[1]) == len(body) - 1
    return [int(line.split()[0]) for line in body[1:]]


@pytest_twisted.ensureDeferred
async def test_start_list_stop_and_exit_status(server):
    client = await connect(server.port, server.token)
    pid = await start(client, "sleep 300")
    assert pid in await listed_pids(client, "--managed")
    assert pid in await listed_pids(client, "sleep 300")
    assert os.getpgid(pid) == pid and os.getsid(pid) == pid, "leads its own session and group"
    assert await client.request(f"STOP {pid}") == f"OK {pid} stopped by SIGTERM"
    assert not pid_alive(pid)
    assert pid not in await listed_pids(client)
    _, body = await client.request(f"INFO {pid}", body=True)
    fields = dict(line.split(": ", 1) for line in body)
    assert (fields["status"], fields["exit_signal"], fields["managed"]) == (
        "dead",
        "SIGTERM",
        "yes",
    )


@pytest_twisted.ensureDeferred
async def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(server):
    client = await connect(server.port, server.token)
    pid = await start(client, "sh -c 'trap \"\" TERM; while :; do sleep 0.1; done'")
    await wait_for(lambda: psutil.Process(pid).children(), timeout=10)  # the trap is set by now
    assert await client.request(f"STOP {pid} 0.5") == f"OK {pid} stopped by SIGKILL"
    assert not pid_alive(pid)


@pytest_twisted.ensureDeferred
async def test_stop_reaches_grandchildren_in_the_process_group(server):
    client = await connect(server.port, server.token)
    pid = await start(client, "sh -c 'sleep 300 & sleep 300 & wait'")
    children = await wait_for(lambda: at_least(2, psutil.Process(pid).children()), timeout=10)
    assert await client.request(f"STOP {pid}") == f"OK {pid} stopped by SIGTERM"
    assert not any(pid_alive(child.pid) for child in children)


def sleeping(pid: int) -> list[psutil.Process]:
    """pid's children once they are `sleep` (a subshell that exec'd it has set its traps)."""
    children = psutil.Process(pid).children()
    return children if children and all(c.name() == "sleep" for c in children) else []


@pytest_twisted.ensureDeferred
async def test_a_grandchild_that_ignores_sigterm_is_killed_too(server):
    client = await connect(server.port, server.token)
    pid = await start(client, "sh -c '(trap \"\" TERM; exec sleep 300) & wait'")
    child = (await wait_for(lambda: sleeping(pid), timeout=10))[0]  # trap set, sleep exec'd
    assert await client.request(f"STOP {pid} 0.5") == f"OK {pid} stopped by SIGKILL"
    assert not pid_alive(child.pid)


@pytest_twisted.ensureDeferred
async def test_signal_pause_resume_and_logs(server):
    client = await connect(server.port, server.token)
    # A program that never forks: a shell looping on `sleep` can be caught by SIGSTOP inside
    # vfork, its child stopped before exec and itself waiting on it, never "stopped".
    program = (
        "import signal, time; "
        "signal.signal(signal.SIGHUP, lambda *_: print('got HUP', flush=True)); "
        "print('ready', flush=True); "
        "[time.sleep(0.05) for _ in iter(int, 1)]"
    )
    pid = await start_script(client, server, f'exec {sys.executable} -c "{program}"', "ready")
    assert await client.request(f"SIGNAL {pid} HUP") == f"OK {pid} sent SIGHUP"
    assert await client.request(f"PAUSE {pid}") == f"OK {pid} paused"
    await wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED)
    assert await client.request(f"RESUME {pid}") == f"OK {pid} resumed"
    await wait_for(lambda: psutil.Process(pid).status() != psutil.STATUS_STOPPED)
    await sleep(0.5)
    _, lines = await client.request(f"LOGS {pid}", body=True)
    assert lines == ["ready", "got HUP"]
    assert await client.request(f"SIGNAL {pid} 10") == f"OK {pid} sent SIGUSR1"
    await wait_for(lambda: not pid_alive(pid))


@pytest_twisted.ensureDeferred
async def test_logs_tell_stdout_from_stderr_in_order(server):
    client = await connect(server.port, server.token)
    script = "echo out1; sleep 0.4; echo err1 >&2; sleep 0.4; echo out2; echo .dotted"
    pid = await start(client, f"sh -c {json.dumps(script)}")
    await wait_for(lambda: not pid_alive(pid))
    await sleep(0.3)
    head, lines = await client.request(f"LOGS {pid}", body=True)
    assert head == "OK 4 lines"
    assert lines == ["out1", "err1", "out2", ".dotted"]
    assert await client.request("MODE json") == '{"ok":true,"mode":"json"}'
    reply = await client.json(f"LOGS {pid} 3")
    assert reply["lines"] == ["err1", "out2", ".dotted"]
    assert reply["streams"] == ["stderr", "stdout", "stdout"]
    assert reply["pid"] == pid


@pytest_twisted.ensureDeferred
async def test_environment_working_directory_and_exit_code(server, tmp_path):
    client = await connect(server.port, server.token)
    command = (
        f"--cwd {tmp_path} --env GREETING='hi there' -- sh -c 'echo $GREETING $HOME; pwd; exit 3'"
    )
    pid = await start(client, command)
    await wait_for(lambda: not pid_alive(pid))
    await sleep(0.2)
    _, lines = await client.request(f"LOGS {pid}", body=True)
    assert lines == [f"hi there {os.environ['HOME']}", str(tmp_path)]
    _, body = await client.request(f"INFO {pid}", body=True)
    fields = dict(line.split(": ", 1) for line in body)
    assert (fields["exit_code"], fields["exit_signal"], fields["env"]) == ("3", "-", "GREETING")


@pytest_twisted.ensureDeferred
async def test_programs_that_do_not_exist_or_cannot_run(server, tmp_path):
    client = await connect(server.port, server.token)
    reply = await client.request("START no-such-program-for-rpm --flag")
    assert reply.startswith("ERR not-found program 'no-such-program-for-rpm'")
    data_file = tmp_path / "data.txt"
    data_file.write_text("not a program\n")
    data_file.chmod(0o644)
    assert (await client.request(f"START {data_file}")).startswith("ERR not-found")
    assert (await client.request(f"START {tmp_path}")).startswith("ERR not-found")
    assert (await client.request("START --cwd /no/such/dir true")).startswith("ERR bad-argument")
    assert await listed_pids(client, "--managed") == []


@pytest_twisted.ensureDeferred
async def test_protected_pids(server):
    client = await connect(server.port, server.token)
    for pid in ("1", "0", "-1", str(os.getpid()), str(os.getppid())):
        for verb in ("STOP", "PAUSE"):
            reply = await client.request(f"{verb} {pid}")
            assert reply.startswith("ERR protected"), (verb, pid, reply)
    assert (await client.request("SIGNAL -5 KILL")).startswith("ERR protected")
    assert (await client.request("STOP 4194305")).startswith("ERR no-such-process")
    assert pid_alive(os.getpid())


@pytest_twisted.ensureDeferred
async def test_processes_the_server_did_not_start_can_be_stopped(server, spawned):
    other = subprocess.Popen(["sleep", "300"])
    spawned.append(other.pid)
    client = await connect(server.port, server.token)
    assert other.pid in await listed_pids(client, "sleep 300")
    reply = await client.request(f"STOP {other.pid}")
    assert reply == f"OK {other.pid} stopped by SIGTERM"
    assert other.wait(timeout=5) == -signal.SIGTERM
    assert (await client.request(f"LOGS {os.getpid()}")).startswith("ERR not-managed")
    assert (await client.request("LOGS 4000000")).startswith("ERR no-such-process")


@pytest_twisted.ensureDeferred
async def test_started_and_ended_processes_show_in_list_within_a_second(server):
    client = await connect(server.port, server.token)
    await listed_pids(client)
    pid = await start(client, "sh -c 'sleep 0.3'")
    assert pid in await listed_pids(client)
    await sleep(1.3)
    assert pid not in await listed_pids(client)


@pytest_twisted.ensureDeferred
async def test_watch_pushes_tables_and_lifecycle_events(server):
    watcher = await connect(server.port, server.token)
    assert await watcher.request("WATCH 0.5") == "OK watching"
    first, body = await watcher.event("* table ")
    assert body[0].split()[0] == "PID" and int(first.split()[2]) == len(body) - 1
    await watcher.event("* table ")
    actor = await connect(server.port, server.token)
    pid = await start(actor, "sh -c 'exit 4'")
    line, _ = await watcher.event(f"* started {pid} ")
    assert line == f"* started {pid} sh -c exit 4"
    line, _ = await watcher.event(f"* exited {pid} ")
    assert line == f"* exited {pid} code 4"
    assert await watcher.request("UNWATCH") == "OK not watching"
    watcher.events.clear()
    await sleep(1.2)
    assert await watcher.request("PING") == "OK pong"
    assert watcher.events == []


@pytest_twisted.ensureDeferred
async def test_json_mode_for_every_command(server):
    client = await connect(server.port, server.token)
    await client.request("MODE json")
    started = await client.json("START sh -c 'echo hello; sleep 300'")
    assert started["ok"] is True and isinstance(started["pid"], int)
    pid = started["pid"]
    listing = await client.json("LIST --managed")
    assert [row["pid"] for row in listing["processes"]] == [pid]
    assert set(listing["processes"][0]) >= ROW_KEYS and listing["processes"][0]["managed"]
    info = await client.json(f"INFO {pid}")
    process = info["process"]
    assert set(process) >= ROW_KEYS | {
        "cwd",
        "threads",
        "children",
        "restarts",
        "exit_code",
        "exit_signal",
    }
    assert process["restarts"] == 0 and process["exit_code"] is None
    await wait_for(lambda: "hello" in read_log(server, 1))
    assert (await client.json(f"LOGS {pid}"))["lines"] == ["hello"]
    assert await client.json(f"SIGNAL {pid} CONT") == {"ok": True, "pid": pid, "signal": "SIGCONT"}
    assert (await client.json("HELP STOP"))["help"][0].startswith("usage: STOP")
    reply = await client.json(f"STOP {pid}")
    assert reply == {"ok": True, "pid": pid, "signal": "SIGTERM", "processes": 2}  # sh, sleep
    error = await client.json("STOP nope")
    assert error["ok"] is False and error["error"] == "bad-argument"
    assert (await client.json("HISTORY 2"))["history"][-1]["command"] == "STOP nope"
    assert await client.json("WATCH 0.2") == {
        "ok": True,
        "message": "watching",
        "interval": 0.2,
        "delta": False,
    }
    event = json.loads(await client.line())
    assert event["event"] == "table" and set(event["processes"][0]) >= ROW_KEYS
    assert await client.json("EXIT") == {"ok": True, "message": "bye"}


@pytest_twisted.ensureDeferred
async def test_the_table_sees_what_the_client_saw_and_refuses_a_reused_pid(server, spawned):
    client = await connect(server.port, server.token)
    other = subprocess.Popen(["sleep", "300"])
    spawned.append(other.pid)
    await listed_pids(client)
    # The server remembers the table it sent this connection: pretend that table showed an
    # older process under the same pid, as if the pid had been reused since.
    table = server.core.sampler.latest
    table.by_pid[other.pid] = table.by_pid[other.pid]._replace(started=1.0)
    reply = await client.request(f"STOP {other.pid}")
    assert reply.startswith("ERR no-such-process") and "reused" in reply
    assert pid_alive(other.pid)


@pytest_twisted.ensureDeferred
async def test_managed_processes_outlive_a_server_stop(make_server, tmp_path):
    server = make_server()
    client = await connect(server.port, server.token)
    pid = await start(client, "sleep 300")
    client.transport.loseConnection()
    await server.service.stopService()
    assert pid_alive(pid), "a stopping server leaves managed processes running"
    os.kill(pid, signal.SIGKILL)


@pytest_twisted.ensureDeferred
async def test_follow_streams_new_output_after_an_optional_backlog(server):
    client = await connect(server.port, server.token)
    script = "echo one; echo two >&2; sleep 1; echo three; sleep 300"
    pid = await start_script(client, server, script, "one")
    await sleep(0.3)
    assert await client.request(f"FOLLOW {pid} 5") == f"OK following {pid}"
    assert (await client.line()) == f"* output {pid} stdout one"
    assert (await client.line()) == f"* output {pid} stderr two"
    assert (await client.line(timeout=5)) == f"* output {pid} stdout three"
    assert await client.request(f"UNFOLLOW {pid}") == f"OK not following {pid}"
    assert (await client.request(f"UNFOLLOW {pid}")).startswith("ERR bad-argument")
    assert (await client.request(f"FOLLOW {os.getpid()}")).startswith("ERR not-managed")


@pytest_twisted.ensureDeferred
async def test_stopping_the_service_twice_is_harmless(make_server):
    server = make_server(stop_children_on_exit=True)
    client = await connect(server.port, server.token)
    pid = await start(client, "sleep 300")
    client.transport.loseConnection()
    await server.service.stopService()
    assert not pid_alive(pid)
    await server.service.stopService()  # its thread pool would raise AlreadyQuit


@pytest_twisted.ensureDeferred
async def test_host_vitals_before_auth_and_with_every_watched_table(server):
    client = await connect(server.port)  # loopback, no AUTH: HOST is allowed where LIST is
    await client.request("MODE json")
    host = (await client.json("HOST"))["host"]
    assert host["hostname"] == socket.gethostname() and host["cpus"] == os.cpu_count()
    assert host["processes"] > 1 and host["memory_total"] > host["memory_used"] > 0
    assert len(host["load"]) == 3 and host["uptime"] > 0 and "rpm_version" in host
    assert (await client.json("WATCH 0.2 --delta"))["ok"]
    events = []
    while sum(event.get("event") == "host" for event in events) < 2:
        events.append(json.loads(await client.line()))
    kinds = [event["event"] for event in events]
    assert kinds[:2] == ["table", "host"] and "delta" in kinds


class _Ended(ProcessProtocol):
    def __init__(self):
        self.ended = Deferred()

    def processEnded(self, reason) -> None:
        self.ended.callback(reason.value.exitCode)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("cwd", [None, "/"], ids=["posix_spawn", "fork"])
async def test_a_spawned_run_leads_its_own_session_in_the_directory_asked_for(cwd, tmp_path):
    """Without --cwd the child is a session leader when the spawn returns; with it (forked),
    once own_session fires; either way in the directory given, with the pipes given."""
    script = "import os, sys; sys.stdout.write(os.getcwd()); sys.stdout.flush(); sys.stdin.read()"
    output = tmp_path / "out"
    ended = _Ended()
    with open(output, "wb") as sink, open(os.devnull, "rb") as empty:
        child = spawn_in_session(
            reactor,
            ended,
            sys.executable,
            [sys.executable, "-c", script],
            dict(os.environ),
            cwd,
            {0: empty.fileno(), 1: sink.fileno(), 2: sink.fileno()},
        )
    if cwd is None:
        assert os.getsid(child.pid) == os.getpgid(child.pid) == child.pid
    else:
        await own_session(reactor, child.pid).addTimeout(10, reactor)
        assert os.getsid(child.pid) == child.pid
    assert await ended.ended.addTimeout(30, reactor) == 0
    assert output.read_text() == (cwd or os.getcwd())


async def read_in_child(tmp_path, path: str, cwd=None, limits=()) -> str:
    """What `cat path` prints in a child spawned as managed programs are (it must succeed)."""
    output, ended = tmp_path / "read", _Ended()
    with open(output, "wb") as sink, open(os.devnull, "rb") as empty:
        spawn_in_session(
            reactor,
            ended,
            "/bin/cat",
            ["cat", path],
            dict(os.environ),
            cwd,
            {0: empty.fileno(), 1: sink.fileno(), 2: sink.fileno()},
            limits=limits,
        )
    assert await ended.ended.addTimeout(30, reactor) == 0
    return output.read_text()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("cwd", [None, "/"], ids=["posix_spawn", "fork"])
async def test_a_spawned_run_ignores_no_signal_the_server_ignores(cwd, tmp_path):
    """Python ignores SIGPIPE, and a server under nohup ignores SIGHUP: its programs start
    with every signal at its default."""
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN, "what the child could inherit"
    status = await read_in_child(tmp_path, "/proc/self/status", cwd)
    [ignored] = [line for line in status.splitlines() if line.startswith("SigIgn:")]
    glibc_own = 1 << 31 | 1 << 32  # 32 and 33, which glibc's posix_spawn leaves ignored
    assert int(ignored.split()[1], 16) & ~glibc_own == 0


@pytest.mark.parametrize("cwd", [None, "/"], ids=["posix_spawn", "fork"])
@pytest.mark.parametrize(
    ("program", "refused"),
    [
        (b"#!/no/such/interpreter\n", errno.ENOENT),
        (b"\x7fELF not really\n", errno.ENOEXEC),
    ],
    ids=["missing-interpreter", "not-a-program"],
)
def test_a_program_that_cannot_be_executed_fails_the_spawn_either_way(
    cwd, program, refused, tmp_path
):
    """posix_spawn says so itself; a forked child tells the parent through a pipe before the
    spawn returns (and is reaped), so no START answers OK for it."""
    script = tmp_path / "script"
    script.write_bytes(program)
    script.chmod(0o755)
    before = set(zombie_children(os.getpid()))
    with pytest.raises(OSError) as caught, open(os.devnull, "rb") as empty:
        spawn_in_session(
            reactor, _Ended(), str(script), [str(script)], {}, cwd, {0: empty.fileno()}
        )
    assert caught.value.errno == refused and getattr(caught.value, "step", "exec") == "exec"
    assert set(zombie_children(os.getpid())) == before, "the forked child was reaped"


def test_a_forked_child_that_cannot_enter_its_directory_fails_the_spawn(tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(ChildRefused) as caught, open(os.devnull, "rb") as empty:
        spawn_in_session(
            reactor, _Ended(), "/bin/true", ["true"], {}, str(not_a_directory), {0: empty.fileno()}
        )
    assert (caught.value.step, caught.value.errno) == ("cwd", errno.ENOTDIR)
    assert caught.value.filename == str(not_a_directory)


def test_a_limit_the_child_cannot_take_fails_the_spawn():
    with open("/proc/sys/fs/nr_open") as nr_open:
        too_many = int(nr_open.read()) + 1  # more than the kernel lets anyone have
    with pytest.raises(ChildRefused) as caught, open(os.devnull, "rb") as empty:
        spawn_in_session(
            reactor,
            _Ended(),
            "/bin/true",
            ["true"],
            {},
            None,
            {0: empty.fileno()},
            limits=[("nofile", too_many)],
        )
    assert caught.value.step == f"limit nofile={too_many}"


@pytest_twisted.ensureDeferred
async def test_a_spawned_run_has_the_limits_given(tmp_path):
    limits = await read_in_child(
        tmp_path, "/proc/self/limits", limits=[("nofile", 77), ("core", 0)]
    )
    rows = {line[:26].strip(): line[26:].split()[:2] for line in limits.splitlines()}
    assert rows["Max open files"] == ["77", "77"] and rows["Max core file size"] == ["0", "0"]


@pytest_twisted.ensureDeferred
async def test_a_new_run_is_waited_for_until_it_leads_its_own_session(spawned):
    late = "import os, time; time.sleep(0.3); os.setsid(); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", late])
    spawned.append(child.pid)
    began = time.monotonic()
    await own_session(reactor, child.pid).addTimeout(10, reactor)
    assert os.getpgid(child.pid) == child.pid, "a signal to our group cannot reach it now"
    assert time.monotonic() - began >= 0.25

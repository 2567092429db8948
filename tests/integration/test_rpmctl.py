"""The installed `rpmctl`, run as a subprocess against real servers: every subcommand, every
exit status, --json parsed back, logs -f, two servers merged, unix sockets and TLS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.certs import make_certificates
from tests.servers import BIN
from tests.support import pid_alive


def rpmctl(*args: str, server=None, token: str | None = None, timeout: float = 60, **extra):
    """Run rpmctl with a clean environment (no $HOME token, no $RPM_* but those given)."""
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    if server is not None:
        env["RPM_HOST"] = f"127.0.0.1:{server.port}"
    if token is not None:
        env["RPM_TOKEN"] = token
    env.update(extra)
    return subprocess.run(
        [str(BIN / "rpmctl"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def eventually(run, wanted: str, timeout: float = 60):
    """Run rpmctl (run()) until `wanted` is in its output; the last result, or a failure
    showing it."""
    deadline = time.monotonic() + timeout
    while wanted not in (result := run()).stdout + result.stderr:
        assert time.monotonic() < deadline, f"never {wanted!r}: {result}"
        time.sleep(0.1)
    return result


@pytest.fixture
def server(server_runner):
    return server_runner.run()


ODD_ARGV = ["a b", "it's", '"quoted"', "$(touch /tmp/rpmctl-not-run)", "-leading-dash", "\\"]


def test_start_logs_info_signal_pause_stop_and_history(server):
    token = server.token
    script = 'for a in "$@"; do echo "[$a]"; done; echo oops >&2; exec sleep 300'
    started = rpmctl("start", "--", "sh", "-c", script, "sh", *ODD_ARGV, server=server, token=token)
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout)  # the pid alone, for pid=$(rpmctl start -- ...)
    assert started.stdout == f"{pid}\n"
    logs = eventually(lambda: rpmctl("logs", str(pid), server=server, token=token), "oops")
    assert logs.stdout.splitlines() == [f"[{word}]" for word in ODD_ARGV], "argv intact"
    assert logs.stderr == "oops\n", "the program's stderr on stderr, no prefixes"
    assert not os.path.exists("/tmp/rpmctl-not-run"), "never through a shell"
    info = rpmctl("info", str(pid), server=server)
    assert info.returncode == 0 and f"pid: {pid}" in info.stdout and "managed: yes" in info.stdout
    listed = rpmctl("ps", "--managed", server=server)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["PID", str(pid)]
    assert rpmctl("kill", str(pid), "CONT", server=server, token=token).returncode == 0
    assert rpmctl("pause", str(pid), server=server, token=token).returncode == 0
    eventually(lambda: rpmctl("info", str(pid), server=server), "status: stopped")
    assert rpmctl("resume", str(pid), server=server, token=token).returncode == 0
    stopped = rpmctl("stop", str(pid), "--grace", "5", server=server, token=token)
    assert (stopped.returncode, stopped.stdout) == (0, ""), "quiet on success"
    assert not pid_alive(pid), "stop exits 0 only once the process is gone"
    history = rpmctl("history", "-n", "3", server=server, token=token)
    assert [line.split("  ")[3] for line in history.stdout.splitlines()] == [
        f"PAUSE {pid}",
        f"RESUME {pid}",
        f"STOP {pid} 5",
    ]


def test_json_prints_the_servers_objects(server):
    token = server.token
    pid = int(rpmctl("start", "--", "sleep", "300", server=server, token=token).stdout)
    rows = json.loads(rpmctl("ps", "--managed", "--json", server=server).stdout)
    assert [row["pid"] for row in rows] == [pid] and rows[0]["cmdline"] == ["sleep", "300"]
    info = json.loads(rpmctl("info", str(pid), "--json", server=server).stdout)
    assert info["ok"] and info["process"]["pid"] == pid
    assert json.loads(rpmctl("ping", "--json", server=server).stdout) == {
        "ok": True,
        "message": "pong",
    }
    stop = json.loads(rpmctl("stop", str(pid), "--json", server=server, token=token).stdout)
    assert stop["signal"] == "SIGTERM"


@pytest.mark.parametrize(
    ("args", "token", "status", "message"),
    [
        (["stop", "999999"], "good", 1, "rpmctl: no-such-process: "),
        (["stop", "999999"], None, 4, "rpmctl: auth-required: "),
        (["stop", "999999"], "wrong-token-of-enough-length", 4, "rpmctl: auth-failed: "),
        (["signal", "1", "NOPE"], "good", 1, "rpmctl: bad-argument: "),
        (["nonsense"], None, 2, "invalid choice"),
        (["start"], "good", 2, "rpmctl: start needs a command line"),
        (["start", "--", "echo", "two\nlines"], "good", 2, "line breaks"),
        (["info", "1", "-H", "a", "-H", "b"], None, 2, "only ps merges several servers"),
    ],
)
def test_exit_statuses_scripts_can_trust(server, args, token, status, message):
    result = rpmctl(*args, server=server, token=server.token if token == "good" else token)
    assert result.returncode == status, result.stderr
    assert message in result.stderr


def test_a_server_that_cannot_be_reached_is_status_3(tmp_path):
    result = rpmctl("-H", "127.0.0.1:1", "ping")
    assert result.returncode == 3
    assert result.stderr.startswith("rpmctl: cannot reach 127.0.0.1:1: ")


def test_logs_follow_prints_lines_as_written_and_ends_with_the_program(server):
    token = server.token
    script = "echo first; sleep 1; echo second >&2; sleep 1; echo third"
    pid = int(rpmctl("start", "--", "sh", "-c", script, server=server, token=token).stdout)
    follow = subprocess.Popen(
        [str(BIN / "rpmctl"), "logs", "-f", str(pid)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            "PATH": os.environ["PATH"],
            "RPM_HOST": f"127.0.0.1:{server.port}",
            "RPM_TOKEN": token,
        },
    )
    try:
        assert follow.stdout.readline() == "first\n", "the first line before the program ends"
        assert pid_alive(pid)
        out, err = follow.communicate(timeout=30)
    finally:
        follow.kill()
    assert (follow.returncode, out, err) == (0, "third\n", "second\n")


def test_ps_merges_two_servers_with_a_host_column(server_runner):
    first, second = server_runner.run(), server_runner.run()
    pids = []
    for each in (first, second):
        started = rpmctl("start", "--", "sleep", "300", server=each, token=each.token)
        pids.append(int(started.stdout))
    hosts = [f"127.0.0.1:{each.port}" for each in (first, second)]
    merged = rpmctl("ps", "--managed", "-H", hosts[0], "-H", hosts[1])
    lines = merged.stdout.splitlines()
    assert lines[0].split()[:2] == ["HOST", "PID"]
    assert [line.split()[:2] for line in lines[1:]] == [
        [hosts[0], str(pids[0])],
        [hosts[1], str(pids[1])],
    ]


def test_unix_socket_and_tls_servers(server_runner, tmp_path):
    socket_path = tmp_path / "rpm.sock"
    local = server_runner.run("--listen", f"unix:{socket_path}")
    assert rpmctl("-H", f"unix:{socket_path}", "ping").stdout == "pong\n"
    (tmp_path / "certs").mkdir()
    certificates = make_certificates(tmp_path / "certs")
    listen = (
        f"ssl:0:privateKey={certificates['key']}:certKey={certificates['cert']}:interface=127.0.0.1"
    )
    secure = server_runner.run("--listen", listen)
    address = f"tls://localhost:{secure.port}"
    ca = str(certificates["ca"])
    token_file = str(secure.state_dir / "token")
    started = rpmctl("-H", address, "--ca", ca, "--token-file", token_file, "start", "sleep", "9")
    assert started.returncode == 0, started.stderr
    refused = rpmctl("-H", address, "ping")  # the system's CAs do not know this one
    assert refused.returncode == 3 and "certificate verify failed" in refused.stderr
    assert local.state_dir != secure.state_dir


def test_completion_scripts_come_from_the_same_definitions():
    for shell in ("bash", "zsh"):
        script = rpmctl("--print-completion", shell)
        assert script.returncode == 0
        assert "logs" in script.stdout and "--follow" in script.stdout


def test_watch_streams_tables_and_stops_on_ctrl_c(server):
    watch = subprocess.Popen(
        [str(BIN / "rpmctl"), "watch", "--json", "-n", "0.5"],
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ["PATH"], "RPM_HOST": f"127.0.0.1:{server.port}"},
    )
    try:
        events = [json.loads(watch.stdout.readline()) for _ in range(4)]
        assert [event["event"] for event in events] == ["table", "host", "table", "host"]
        assert any(row["pid"] == 1 for row in events[0]["processes"])
        watch.send_signal(signal.SIGINT)
        watch.communicate(timeout=30)  # reading on, as a pipeline's reader does
        assert watch.returncode == 0, "Ctrl-C is how a watch ends"
    finally:
        watch.kill()
        watch.communicate()


def test_reload_without_a_programs_file_is_status_1(server):
    result = rpmctl("reload", server=server, token=server.token)
    assert result.returncode == 1
    assert result.stderr == (
        "rpmctl: bad-argument: this server has no programs file; start it with --programs FILE\n"
    )


def test_names_and_restart_through_rpmctl(server):
    token = server.token
    first = rpmctl("start", "--name", "web", "--", "sleep", "300", server=server, token=token)
    assert first.returncode == 0, first.stderr
    again = rpmctl("restart", "web", "--json", server=server, token=token)
    assert json.loads(again.stdout)["previous"] == int(first.stdout)
    assert rpmctl("info", "web", server=server).stdout.startswith(
        f"pid: {json.loads(again.stdout)['pid']}\n"
    )
    assert rpmctl("stop", "web", server=server, token=token).returncode == 0


def test_reload_prints_what_changed(server_runner, tmp_path):
    path = tmp_path / "programs.toml"
    path.write_text("")
    server = server_runner.run("--programs", str(path))
    path.write_text('[programs.added]\ncommand = "sleep 300"\n')
    result = rpmctl("reload", server=server, token=server.token)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith("+ added started ")
    assert rpmctl("stop", "added", server=server, token=server.token).returncode == 0


def test_a_fleet_file_names_the_hosts_each_with_its_token(server_runner, tmp_path):
    first, second = server_runner.run(), server_runner.run()
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        f'[hosts.alpha]\naddress = "127.0.0.1:{first.port}"\n'
        f'token_file = "{first.state_dir}/token"\n'
        f'[hosts.beta]\naddress = "127.0.0.1:{second.port}"\n'
        f'token_file = "{second.state_dir}/token"\n'
    )
    started = rpmctl("--hosts", str(fleet), "-H", "beta", "start", "sleep", "300")
    assert started.returncode == 0, started.stderr
    merged = rpmctl("--hosts", str(fleet), "ps", "--managed")
    assert [line.split()[:2] for line in merged.stdout.splitlines()[1:]] == [
        ["beta", started.stdout.strip()]
    ]
    assert rpmctl("--hosts", str(fleet), "ping").returncode == 2, "which host? -H says"
    stopped = rpmctl("--hosts", str(fleet), "-H", "beta", "stop", started.stdout.strip())
    assert stopped.returncode == 0

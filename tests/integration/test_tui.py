"""rpm-tui in a real terminal (tmux) against a real server (twistd in another process)."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from tests.servers import run_tui_once, talk
from tests.support import pid_alive


def managed_pid(server, pattern: str) -> int | None:
    lines = talk(server.port, "LIST --managed", "EXIT")
    for line in lines:
        if pattern in line and line.split()[0].isdigit():
            return int(line.split()[0])
    return None


def test_table_filter_and_quit(run_server, terminal):
    server = run_server()
    token = (server.state_dir / "token").read_text().strip()
    talk(server.port, f"AUTH {token}", "START sleep 3131", "START sleep 3132", "EXIT")
    tui = terminal(f"127.0.0.1:{server.port}", "--token-file", str(server.state_dir / "token"))
    screen = tui.wait_for(lambda text: "connected" in text and len(rows_of(text)) > 2)
    assert "PID" in screen and "COMMAND" in screen and "%CPU" in screen
    tui.send("/")
    tui.type("sleep 313")
    tui.send("Enter")
    screen = tui.wait_for("filter: sleep 313 (2)")
    assert sorted(row.split(" M ")[-1].strip() for row in rows_of(screen)) == [
        "sleep 3131",
        "sleep 3132",
    ]
    tui.send("/", "Escape")
    tui.wait_for(lambda text: len(rows_of(text)) > 2)
    tui.send("q")
    assert tui.exit_status() == 0


def table_top(screen: str) -> int:
    """The line of the table's column titles (the machines' vitals come above it)."""
    lines = screen.splitlines()
    return next((n for n, line in enumerate(lines) if line.lstrip().startswith(("PID", "HOST"))), 0)


def rows_of(screen: str) -> list[str]:
    return [
        line for line in screen.splitlines()[table_top(screen) + 1 :] if line[:7].strip().isdigit()
    ]


def test_launch_then_logs_then_stop(run_server, terminal):
    server = run_server()
    tui = terminal(f"127.0.0.1:{server.port}", "--token-file", str(server.state_dir / "token"))
    tui.wait_for("connected")
    tui.send("n")
    tui.wait_for("Launch a program")
    tui.type("sh -c 'echo e2e-hello; echo e2e-oops >&2; sleep 300'")
    tui.send("Enter")
    tui.wait_for("started pid")
    tui.wait_for("e2e-hello; echo")
    pid = managed_pid(server, "e2e-hello")
    assert pid is not None
    tui.send("l")
    screen = tui.wait_for(lambda text: "e2e-hello" in text and "e2e-oops" in text)
    assert f"output of pid {pid}" in screen
    tui.send("Escape")
    tui.wait_for("STARTED")
    tui.send("k")
    tui.wait_for(f"Stop pid {pid}?")
    tui.send("y")
    tui.wait_for(f"{pid} stopped by SIGTERM")
    assert not pid_alive(pid)


def test_reconnects_after_the_server_is_killed_and_restarted(server_runner, terminal):
    server = server_runner.run()
    tui = terminal(f"127.0.0.1:{server.port}", "--token-file", str(server.state_dir / "token"))
    tui.wait_for("connected")
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    tui.wait_for("disconnected")
    tui.wait_for("STALE")
    server_runner.run(port=server.port, state_dir=server.state_dir)
    tui.wait_for(lambda text: "connected" in text and "disconnected" not in text, timeout=15)


def test_an_unreachable_server_is_reported_before_the_screen_is_taken(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    result = run_tui_once(tmp_path, f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"rpm-tui: cannot reach 127.0.0.1:{port}: Connection was "
        "refused by other side: 111: Connection refused."
    )
    assert result.stdout == "" and time.monotonic() - started < 15


@pytest.mark.parametrize("address", ["nohost:99999", "tls://:x", "unix:"])
def test_bad_addresses_are_one_line_errors(address, tmp_path):
    result = run_tui_once(tmp_path, address)
    assert result.returncode == 1
    assert result.stderr.startswith("rpm-tui: ") and result.stderr.count("\n") == 1


def test_wait_starts_without_a_server_and_connects_when_it_appears(server_runner, terminal):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state_dir = server_runner.directory / "later"
    tui = terminal(f"127.0.0.1:{port}", "--wait")
    tui.wait_for("disconnected")
    server_runner.run("--no-auth", port=port, state_dir=state_dir)
    tui.wait_for(lambda text: "connected" in text and "disconnected" not in text, timeout=15)


def test_two_hosts_in_one_merged_table(run_server, terminal):
    first, second = run_server("--no-auth"), run_server("--no-auth")
    talk(second.port, "START sleep 4242", "EXIT")
    tui = terminal(f"127.0.0.1:{first.port}", f"localhost:{second.port}", width=160)
    screen = tui.wait_for("2/2 connected")  # the status bar sums the fleet up
    assert screen.splitlines()[table_top(screen)].startswith("HOST")
    assert screen.splitlines()[0].split()[:2] == [f"127.0.0.1:{first.port}", "connected"]
    tui.send("/")
    tui.type("sleep 4242")
    tui.send("Enter")
    screen = tui.wait_for("filter: sleep 4242 (2)")
    rows = sorted(rows_of_hosts(screen))  # both servers run here, so both list the process
    assert rows[0].startswith(f"127.0.0.1:{first.port}") and " M " not in rows[0]
    assert rows[1].startswith(f"localhost:{second.port}") and " M  sleep 4242" in rows[1]


def rows_of_hosts(screen: str) -> list[str]:
    lines = screen.splitlines()[table_top(screen) + 1 :]
    return [line for line in lines if ":" in line.split(" ")[0]]


def highlighted_rows(tui) -> list[int]:
    """Screen lines of the table (below the header, above the status bar) shown in reverse
    video or on a coloured background, across the columns before COMMAND at least."""
    top = table_top(tui.screen())
    screen = tui.attributes()
    lines = []
    for y in range(top + 1, screen.lines - 2):
        cells = [screen.buffer[y][x] for x in range(60)]
        if all(cell.reverse or cell.bg != "default" for cell in cells):
            lines.append(y - top)
    return lines


@pytest.mark.parametrize(
    "env",
    [
        {"TERM": "xterm"},
        {"TERM": "xterm-256color"},
        {"TERM": "screen"},
        {"TERM": "tmux-256color"},
        {"TERM": "xterm-256color", "NO_COLOR": "1"},
    ],
    ids=["xterm", "xterm-256color", "screen", "tmux-256color", "NO_COLOR"],
)
def test_the_selected_row_is_highlighted_and_moves_with_the_keys(run_server, terminal, env):
    server = run_server("--no-auth")
    tui = terminal(f"127.0.0.1:{server.port}", env=env, height=20)
    tui.wait_for(lambda text: "connected" in text and len(rows_of(text)) > 5)
    tui.send("N")  # by pid: an order that does not change between samples
    tui.wait_for(lambda text: rows_of(text)[0].split()[0] == "1")
    assert highlighted_rows(tui) == [1]
    tui.send("Down", "Down")
    deadline = time.monotonic() + 10
    while highlighted_rows(tui) != [3]:
        assert time.monotonic() < deadline, tui.screen()
        time.sleep(0.1)


def test_without_a_token_the_tui_says_read_only_and_how_to_give_one(run_server, terminal):
    server = run_server()
    tui = terminal(f"127.0.0.1:{server.port}")
    tui.wait_for("connected read-only")
    for key in ("n", "k"):
        tui.send(key)
        screen = tui.wait_for("--token-file")
        assert "Launch a program" not in screen and "Stop pid" not in screen
    tui.send("q")
    assert tui.exit_status() == 0


def test_a_fleet_of_20_servers_with_their_own_tokens_one_refused(server_runner, terminal, tmp_path):
    servers = [server_runner.run() for _ in range(20)]
    tables = []
    for number, server in enumerate(servers):
        tables.append(
            f'[hosts.node{number:02d}]\naddress = "127.0.0.1:{server.port}"\n'
            f'token_env = "NODE{number:02d}_TOKEN"\n'
        )
    fleet = tmp_path / "fleet.toml"
    fleet.write_text("\n".join(tables))
    environment = {
        f"NODE{number:02d}_TOKEN": "wrong-token-of-a-believable-length" if number == 7 else s.token
        for number, s in enumerate(servers)
    }
    tui = terminal("--hosts", str(fleet), width=140, env=environment)
    tui.wait_for("20/20 connected \u00b7 1 auth failed", timeout=60)
    tui.wait_for("node19")  # the HOST column shows the fleet file's names
    tui.send("q")
    assert tui.exit_status() == 0

"""Signal policy, tokens and throttling, state directory, options and listeners."""

import contextlib
import os
from pathlib import Path

import pytest

from rpm import signames, tokens
from rpm.errors import BadArgument, NoSuchProcess, NotPermitted, Protected
from rpm.paths import default_state_dir
from rpm.server import auth, config
from rpm.server.procs.identity import ancestors, is_kernel_thread
from rpm.server.procs.policy import PID_MAX, SignalPolicy
from rpm.server.statedir import StateDirBusy, StateLock, check_state_dir, prepare_state_dir
from rpm.server.tap import Options
from tests.support import held_in_a_thread

# -- policy ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pid", [1, 0, -1, -12345])
def test_pids_of_one_or_less_are_protected(pid):
    with pytest.raises(Protected):
        SignalPolicy("owned", lambda pid, started: False).check(pid)


def test_the_server_and_its_ancestors_are_protected():
    policy = SignalPolicy("owned", lambda pid, started: False)
    for pid in [os.getpid(), *ancestors(os.getpid())]:
        if pid > 1:
            with pytest.raises(Protected):
                policy.check(pid)


def test_pids_that_cannot_exist_are_no_such_process():
    policy = SignalPolicy("owned", lambda pid, started: False)
    with pytest.raises(NoSuchProcess):
        policy.check(PID_MAX + 1)
    with pytest.raises(NoSuchProcess):
        policy.check(10**30)


def test_kernel_threads_are_protected_where_there_are_any():
    kthreadd = 2
    if not is_kernel_thread(kthreadd):
        pytest.skip("no Linux kernel threads visible here")
    with pytest.raises(Protected, match="kernel thread"):
        SignalPolicy("owned", lambda pid, started: False, own_pid=99).check(kthreadd)


def test_a_thread_id_is_refused_as_a_thread_of_its_process():
    outsider = SignalPolicy("owned", lambda pid, started: False, own_pid=2**22)
    with held_in_a_thread() as tid:
        with pytest.raises(BadArgument, match=f"{tid} is a thread of {os.getpid()}"):
            outsider.check(tid)
        with pytest.raises(Protected, match="thread of the rpm server"):
            SignalPolicy("owned", lambda pid, started: False).check(tid)


def test_managed_scope_refuses_processes_the_server_did_not_start():
    policy = SignalPolicy("managed", lambda pid, started: False, own_pid=2**22)
    with pytest.raises(NotPermitted, match="--signal-scope managed"):
        policy.check(os.getpid())


def test_managed_scope_allows_descendants_of_managed_processes():
    parent = os.getppid()
    policy = SignalPolicy("managed", lambda pid, started: pid == parent, own_pid=2**22)
    assert policy.check(os.getpid()) > 0


def test_a_reused_pid_is_refused():
    policy = SignalPolicy("owned", lambda pid, started: False, own_pid=2**22)
    with pytest.raises(NoSuchProcess, match="reused"):
        policy.check(os.getpid(), seen_started=1.0)


def test_unknown_scope_is_a_programming_error():
    with pytest.raises(ValueError):
        SignalPolicy("everything", lambda pid, started: False)


# -- signal names ----------------------------------------------------------------------------


def test_signal_names_round_trip():
    for name in ("HUP", "INT", "TERM", "KILL", "USR1", "USR2", "STOP", "CONT"):
        assert signames.signal_name(signames.parse_signal(name)) == "SIG" + name
    assert signames.signal_name(signames.parse_signal("RTMIN+3")) == "SIGRTMIN+3"
    with pytest.raises(BadArgument):
        signames.parse_signal("SIG")


# -- tokens ----------------------------------------------------------------------------------


def test_first_start_writes_a_long_random_private_token(tmp_path):
    token = auth.load_token(str(tmp_path), None)
    path = tmp_path / "token"
    assert len(token) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert auth.load_token(str(tmp_path), None) == token
    other = tmp_path / "other"
    other.mkdir()
    assert auth.load_token(str(other), None) != token


def test_a_token_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "token"
    path.write_text("a" * 40)
    path.chmod(0o640)
    with pytest.raises(tokens.TokenError, match="chmod 600"):
        auth.load_token(str(tmp_path), str(path))
    path.chmod(0o600)
    assert auth.load_token(str(tmp_path), str(path)) == "a" * 40


def test_unusable_token_files(tmp_path):
    with pytest.raises(tokens.TokenError, match="does not exist"):
        tokens.read_token(str(tmp_path / "missing"))
    short = tmp_path / "short"
    short.write_text("abc\n")
    short.chmod(0o600)
    with pytest.raises(tokens.TokenError, match="at least"):
        tokens.read_token(str(short))


def test_token_comparison():
    assert auth.token_matches("abc", "abc")
    assert not auth.token_matches("abc", "abd")
    assert not auth.token_matches("abc", "ab\u00e9")


def test_throttle_doubles_per_failure_and_forgets():
    throttle = auth.AuthThrottle(base=0.25, cap=2.0, forget_after=100)
    assert throttle.delay("h", 0) == 0
    for expected in (0.25, 0.5, 1.0, 2.0, 2.0):
        throttle.failed("h", 0)
        assert throttle.delay("h", 0) == expected
    assert throttle.delay("other", 0) == 0
    assert throttle.delay("h", 101) == 0


def test_throttle_memory_is_bounded():
    throttle = auth.AuthThrottle(max_peers=10)
    for number in range(100):
        throttle.failed(f"10.0.0.{number}", 0)
    assert len(throttle._failures) == 10


# -- state directory -------------------------------------------------------------------------


def test_default_state_dir_follows_xdg_and_never_var_lib_rpm(monkeypatch):
    assert default_state_dir({"XDG_STATE_HOME": "/x/state"}) == "/x/state/rpm"
    assert default_state_dir({"XDG_STATE_HOME": "relative"}).endswith("/.local/state/rpm")
    assert default_state_dir({}).endswith("/.local/state/rpm")
    assert check_state_dir("/var/lib/rpm/")
    assert check_state_dir("/var/lib/rpm-server") is None


def test_state_dir_is_private(tmp_path):
    path = tmp_path / "state"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    prepare_state_dir(str(path))
    assert path.stat().st_mode & 0o777 == 0o700
    assert (path / "logs").is_dir()


# -- options and listeners -------------------------------------------------------------------


def parse(*args):
    options = Options()
    options.parseOptions(list(args))
    return config.build_config(options)


def test_defaults_listen_on_loopback_5002():
    built = parse()
    assert built.listen == ["tcp:5002:interface=127.0.0.1"]
    assert (built.signal_scope, built.idle_timeout, built.max_managed) == ("owned", 900.0, 1000)
    assert built.state_dir.endswith("/rpm")
    assert parse("--port", "7000").listen == ["tcp:7000:interface=127.0.0.1"]
    assert parse("--interface", "::1").listen == ["tcp6:5002:interface=\\:\\:1"]


def test_listen_replaces_the_default_listener_and_port_adds_it_back():
    unix = "unix:/tmp/rpm-test.sock"
    assert parse("--listen", unix).listen == [f"{unix}:mode=600:lockfile=1"]
    both = parse("--listen", unix, "--port", "5002").listen
    assert both == [f"{unix}:mode=600:lockfile=1", "tcp:5002:interface=127.0.0.1"]
    assert parse("--listen", unix, "--interface", "::1").listen[1] == (
        "tcp6:5002:interface=\\:\\:1"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "http"], "--port must be"),
        (["--port", "70000"], "--port must be"),
        (["--idle-timeout", "soon"], "--idle-timeout"),
        (["--idle-timeout", "nan"], "--idle-timeout"),
        (["--max-managed", "0"], "--max-managed"),
        (["--signal-scope", "all"], "--signal-scope"),
        (["--state-dir", "/var/lib/rpm"], "package manager"),
        (["--interface", "0.0.0.0"], "refusing plain TCP"),
        (["--listen", "tcp:5002"], "refusing plain TCP"),
        (["--listen", "tcp:5002:interface=192.0.2.1"], "--listen ssl:"),
        (["--listen", "unix:/tmp/x.sock:mode=666"], "mode 666"),
        (["--listen", "tcp:abc"], "port must be"),
        (["--listen", "frob:1"], "not one rpm knows"),
    ],
)
def test_bad_options_say_what_to_fix(args, message):
    with pytest.raises(config.ConfigError, match=message):
        parse(*args)


def test_insecure_allows_exposed_plain_tcp():
    assert parse("--interface", "0.0.0.0", "--insecure").listen == ["tcp:5002:interface=0.0.0.0"]


def test_listeners_repeat_and_unix_sockets_get_safe_defaults():
    built = parse("--listen", "unix:/run/rpm.sock", "--listen", "ssl:5003:privateKey=k:certKey=c")
    assert built.listen == [
        "unix:/run/rpm.sock:mode=600:lockfile=1",
        "ssl:5003:privateKey=k:certKey=c",
    ]


def test_probe_reports_a_port_in_use(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(config.ConfigError, match="another server"):
            config.probe_port(f"tcp:{port}:interface=127.0.0.1")


@pytest.mark.parametrize(
    "listener",
    ["tcp:5002:192.0.2.1", "tcp6:5002:50:2001\\:db8\\:\\:1", "tcp6:5002", "tcp:port=5002"],
)
def test_positional_and_default_interfaces_are_judged_exposed(listener):
    with pytest.raises(config.ConfigError, match="refusing plain TCP"):
        parse("--listen", listener)


def test_loopback_listeners_in_every_spelling_are_accepted():
    for listener in ("tcp:5002:127.0.0.1", "tcp6:5002:50:\\:\\:1", "tcp:5002:interface=localhost"):
        assert parse("--listen", listener).listen == [listener]


def test_no_auth_is_refused_where_other_machines_can_connect():
    exposed = "ssl:5003:privateKey=k:certKey=c:interface=0.0.0.0"
    with pytest.raises(config.ConfigError, match="--no-auth"):
        parse("--no-auth", "--listen", exposed)
    assert parse("--no-auth", "--insecure", "--listen", exposed).no_auth
    assert parse("--no-auth").no_auth
    assert parse("--no-auth", "--listen", "unix:/tmp/r.sock").no_auth


def test_log_cap_has_a_floor():
    assert parse("--log-max-bytes", "1048576").log_max_bytes == 1048576
    with pytest.raises(config.ConfigError, match="--log-max-bytes"):
        parse("--log-max-bytes", "100")


def test_a_state_directory_of_another_user_is_refused(tmp_path):
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, 65534, 65534)
    else:
        theirs = Path("/")  # root's, and we are not root
    assert "belongs to uid" in check_state_dir(str(theirs))
    assert check_state_dir(str(tmp_path)) is None
    assert check_state_dir(str(tmp_path / "not-yet")) is None


def test_a_state_directory_that_is_a_symbolic_link_is_refused(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path)
    assert "symbolic link" in check_state_dir(str(tmp_path / "link"))
    assert "symbolic link" in check_state_dir(str(tmp_path / "link") + "/")


def test_pid_1_is_protected_by_its_own_rule_not_as_an_ancestor():
    stranger = SignalPolicy("owned", lambda pid, started: False, own_pid=2**22)  # no parents
    for pid in (1, 0, -1):
        with pytest.raises(Protected, match="1 is init"):
            stranger.check(pid)


def test_one_server_per_state_directory(tmp_path):
    first, second = StateLock(str(tmp_path)), StateLock(str(tmp_path))
    first.acquire()
    with pytest.raises(StateDirBusy, match=f"pid {os.getpid()}"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()


def test_a_removed_lock_file_does_not_let_a_second_server_in(tmp_path):
    first, second = StateLock(str(tmp_path)), StateLock(str(tmp_path))
    first.acquire()
    try:
        (tmp_path / "lock").unlink()
        with pytest.raises(StateDirBusy, match="pid unknown"):
            second.acquire()
        assert not (tmp_path / "lock").exists(), "the refused server leaves nothing behind"
    finally:
        first.release()


# -- each rule of the policy, tokens and throttle at its edges (found by `make mutate`) ------


def test_the_pid_range_ends_at_linux_pid_max_limit():
    policy = SignalPolicy("owned", lambda pid, started: False, own_pid=PID_MAX)
    with pytest.raises(NoSuchProcess, match=f"no process has pid {PID_MAX + 1}$"):
        policy.check(PID_MAX + 1)
    with pytest.raises(Protected, match="rpm server"):
        policy.check(PID_MAX)  # a possible pid (here, the "server's"), judged as such
    free = next(pid for pid in range(PID_MAX - 1, 1, -1) if not os.path.exists(f"/proc/{pid}"))
    with pytest.raises(NoSuchProcess, match=f"no process has pid {free}$"):
        policy.check(free)  # possible, just not there: the same answer, from /proc


def test_the_servers_own_parent_is_protected_whoever_runs_the_check(spawned):
    """The protected set is the server's pid and *its* ancestors, not the caller's."""
    import subprocess

    child = subprocess.Popen(["sleep", "60"])
    spawned.append(child.pid)
    policy = SignalPolicy("owned", lambda pid, started: False, own_pid=child.pid)
    with pytest.raises(Protected, match="it is the rpm server or one of its parents"):
        policy.check(os.getpid())  # the parent of the "server" (the sleep)
    with pytest.raises(Protected, match="it is the rpm server"):
        policy.check(child.pid)


def test_managed_scope_matches_programs_and_their_parents_by_pid_and_start_time(spawned):
    import subprocess

    from rpm.server.procs.identity import start_time

    parent = subprocess.Popen(["sh", "-c", "sleep 60 & wait"])
    spawned.append(parent.pid)
    kid = None
    while kid is None:
        kids = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
        for entry in kids:
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == parent.pid and (entry / "cmdline").read_bytes().startswith(
                    b"sleep"
                ):
                    kid = int(entry.name)
    spawned.append(kid)
    known = {(parent.pid, start_time(parent.pid))}
    policy = SignalPolicy("managed", lambda pid, started: (pid, started) in known, own_pid=2**22)
    assert policy.check(parent.pid) == start_time(parent.pid)  # the program itself
    assert policy.check(kid) == start_time(kid)  # a descendant, its parent matched exactly
    known.clear()
    known.add((parent.pid, start_time(parent.pid) + 1))  # another process once had the pid
    with pytest.raises(NotPermitted, match="was not started by this server"):
        policy.check(kid)
    with pytest.raises(NotPermitted, match="--signal-scope managed"):
        policy.check(parent.pid)


def test_an_unknown_scope_names_the_scopes_there_are():
    with pytest.raises(ValueError, match="owned"):
        SignalPolicy("everything", lambda pid, started: False)


def test_a_new_token_file_is_never_written_through_an_existing_file_or_link(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "token").symlink_to(target)
    with pytest.raises(FileExistsError):
        auth.create_token(str(tmp_path / "token"))
    assert target.read_text() == ""


def test_a_new_token_file_is_closed_on_exec(tmp_path, monkeypatch):
    import fcntl

    opened = []
    real_fdopen = os.fdopen

    def fdopen(fd, *args, **kwargs):
        opened.append(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(auth.os, "fdopen", fdopen)
    auth.create_token(str(tmp_path / "token"))
    assert opened == [fcntl.FD_CLOEXEC]


def test_token_file_errors_name_the_file(tmp_path):
    directory = tmp_path / "adir"
    directory.mkdir()
    with pytest.raises(tokens.TokenError, match=f"token file {directory} is not a regular file"):
        tokens.read_token(str(directory))
    locked = tmp_path / "locked" / "token"
    locked.parent.mkdir()
    locked.parent.chmod(0)
    try:
        if os.access(locked.parent, os.X_OK):  # root reads anything: ask for a name too long
            locked = tmp_path / ("x" * 300)
        with pytest.raises(tokens.TokenError, match=f"cannot read the token file {locked}: "):
            tokens.read_token(str(locked))
    finally:
        locked.parent.chmod(0o700)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff" * 40)
    binary.chmod(0o600)
    with pytest.raises(tokens.TokenError, match=f"cannot read the token file {binary}: "):
        tokens.read_token(str(binary))


def test_a_token_of_exactly_the_minimum_length_is_accepted(tmp_path):
    path = tmp_path / "token"
    path.write_text("k" * tokens.MIN_TOKEN_CHARS + "\n")
    path.chmod(0o600)
    assert tokens.read_token(str(path)) == "k" * tokens.MIN_TOKEN_CHARS
    path.write_text("k" * (tokens.MIN_TOKEN_CHARS - 1) + "\n")
    with pytest.raises(tokens.TokenError, match="at least"):
        tokens.read_token(str(path))


def test_the_default_token_comes_from_the_environment_given(tmp_path):
    from rpm.addresses import parse_address

    local = parse_address("127.0.0.1:5002")
    assert tokens.default_token(local, {"RPM_TOKEN": "from-env"}) == "from-env"
    state = tmp_path / "state" / "rpm"
    state.mkdir(parents=True)
    (state / "token").write_text("t" * 40)
    (state / "token").chmod(0o600)
    assert tokens.default_token(local, {"XDG_STATE_HOME": str(tmp_path / "state")}) == "t" * 40
    assert tokens.default_token(local, {"XDG_STATE_HOME": str(tmp_path / "none")}) is None


def test_throttle_defaults_cap_at_30_s_and_forget_after_15_min_of_quiet():
    throttle = auth.AuthThrottle()
    for _ in range(20):
        throttle.failed("h", 10_000.0)
    assert throttle.delay("h", 10_000.0) == 30.0
    assert throttle.delay("h", 10_900.0) == 30.0  # exactly 15 minutes: still remembered
    assert throttle.delay("h", 10_900.5) == 0.0
    throttle.failed("h", 10_900.0)  # within 15 minutes of the last failure: counted on
    assert throttle.delay("h", 10_900.0) == 30.0
    throttle.failed("h", 11_801.0)  # after 15 minutes of quiet: counted from one again
    assert throttle.delay("h", 11_801.0) == 0.25


def test_throttle_remembers_ten_thousand_peers_by_default():
    throttle = auth.AuthThrottle()
    for number in range(10_001):
        throttle.failed(f"peer{number}", 0.0)
    assert len(throttle._failures) == 10_000
    assert throttle.delay("peer0", 0.0) == 0.0 and throttle.delay("peer1", 0.0) == 0.25


def test_a_clients_token_comes_from_its_file_first_then_the_environment(tmp_path):
    from rpm.addresses import parse_address

    local = parse_address("127.0.0.1:5002")
    path = tmp_path / "token"
    path.write_text("f" * 40)
    path.chmod(0o600)
    assert tokens.token_for(local, str(path), {"RPM_TOKEN": "from-env"}) == "f" * 40
    assert tokens.token_for(local, None, {"RPM_TOKEN": "from-env"}) == "from-env"
    remote = parse_address("192.0.2.7:5002")
    assert tokens.token_for(remote, None, {"XDG_STATE_HOME": str(tmp_path)}) is None


def test_the_policys_refusals_say_why_in_full(spawned):
    import subprocess

    from rpm.server.procs.identity import start_time
    from rpm.server.procs.policy import check_possible

    check_possible(1)  # INFO 1 is a fair question
    with pytest.raises(NoSuchProcess, match=r"^no process has pid 0$"):
        check_possible(0)
    stranger = SignalPolicy("owned", lambda pid, started: False, own_pid=2**22)
    with pytest.raises(Protected) as caught:
        stranger.check(0)
    assert caught.value.message == (
        "pid 0 is protected: 1 is init, 0 and negative pids address process groups or every process"
    )
    child = subprocess.Popen(["sleep", "60"])
    spawned.append(child.pid)
    with pytest.raises(NoSuchProcess) as caught:
        stranger.check(child.pid, start_time(child.pid) - 10)
    assert caught.value.message == (
        f"pid {child.pid} now names another process than the one you listed "
        "(the pid was reused); LIST again"
    )
    managed_only = SignalPolicy("managed", lambda pid, started: False, own_pid=2**22)
    with pytest.raises(NotPermitted) as caught:
        managed_only.check(child.pid)
    assert caught.value.message == (
        f"pid {child.pid} was not started by this server and the server runs with "
        "--signal-scope managed"
    )


def test_the_default_token_reads_the_servers_environment_when_none_is_given(monkeypatch):
    from rpm.addresses import parse_address

    monkeypatch.setenv("RPM_TOKEN", "from-the-environment")
    assert tokens.default_token(parse_address("127.0.0.1:5002")) == "from-the-environment"

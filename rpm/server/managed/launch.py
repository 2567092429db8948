"""How a managed program is found and started: PATH lookup, a new session, its log files.

The program is resolved on the server's PATH before anything runs, so a missing or
non-executable program is an error the client sees, not a silent exit. The child leads a
new session and process group from before it execs (session.py), its stdin is /dev/null and
its stdout and stderr are pipes to its log writer (logwriter.py), a process of its own that
outlives the server as the program does: the server holds no pipe to either.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import functools
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterator

from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from rpm.errors import BadArgument, NotFound, NotPermitted, SpawnFailed
from rpm.server.managed.records import ManagedRecord
from rpm.server.managed.session import (
    must_fork,
    spawn_in_session,
    spawn_into_cgroup,
    spawn_now,
)
from rpm.server.managed.written import Handed
from rpm.server.procs.identity import RUN_VARIABLE

log = Logger()
WRITERS_RETRY = 60.0
# Where a fork or a thread fails with EAGAIN: what the server's user (of rpm's processes) hit.
OUT_OF_PROCESSES = "runs as many processes as it may (ulimit -u), or the system as many as it can"
# What the system's refusal of a spawn means, where its own words (strerror) do not say.
SPAWN_REFUSALS = {
    errno.EAGAIN: f"the server's user {OUT_OF_PROCESSES}",
    errno.ENOMEM: "the machine is out of memory",
}
LOG_WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "logwriter.py")


def resolve_program(name: str, cwd: str | None, search_path: str) -> str:
    """The executable a command line names, or NotFound saying why."""
    if "/" in name:
        candidate = os.path.join(cwd or os.getcwd(), name)
        if not os.path.exists(candidate):
            raise NotFound(f"program {name!r} does not exist")
        if os.path.isdir(candidate) or not os.access(candidate, os.X_OK):
            raise NotFound(f"program {name!r} is not an executable file")
        return candidate
    found = shutil.which(name, path=search_path)
    if found is None:
        raise NotFound(f"program {name!r} is not on the server's PATH ({search_path})")
    return found


def spawn_refusal(err: OSError, program: str) -> str:
    """Why the system would not start program, in words that name the real cause: a script
    whose `#!` interpreter is missing is refused as if the script itself were."""
    step = getattr(err, "step", "exec")  # a forked child's (session.ChildRefused)
    if step == "cwd":
        return f"its directory {err.filename!r} cannot be entered: {err.strerror}"
    if step != "exec":
        return f"its {step} cannot be set: {err.strerror}"
    if err.errno == errno.ENOENT and os.path.isfile(program):
        interpreter = _interpreter_of(program)
        if interpreter:
            return f"its interpreter {interpreter!r} (its #! line) does not exist"
    return SPAWN_REFUSALS.get(err.errno) or err.strerror or str(err)


def _interpreter_of(script: str) -> str | None:
    try:
        with open(script, "rb") as file:
            first = file.readline(256)
    except OSError:
        return None
    words = first[2:].split() if first.startswith(b"#!") else []
    return os.fsdecode(words[0]) if words else None


def check_cwd(cwd: str | None) -> None:
    if cwd is not None and not os.path.isdir(cwd):
        raise BadArgument(f"the working directory {cwd!r} does not exist or is not a directory")


class _SharedWriter(ProcessProtocol):
    """The shared log writer's process: when it ends, the next START starts another."""

    def __init__(self, launcher: Launcher, channel: socket.socket):
        self._launcher, self._channel = launcher, channel

    def processEnded(self, reason) -> None:
        self._launcher.close_writer_channel(self._channel)


class Launcher:
    """Starts managed programs in a session of their own (spawn_session: session.py's, or
    a test's stand-in)."""

    def __init__(
        self,
        reactor,
        spawn_session=None,
        environ: dict | None = None,
        umask: int | None = None,
        allowed: tuple[str, ...] | None = None,
        instance: str = "rpm",
    ):
        self._reactor = reactor
        self._instance = instance  # tells this state directory's runs from another's
        self._allowed = allowed  # --allow-programs patterns; None: anything
        self._umask = umask  # the children's, where it differs from the server's own
        self._spawn_session = spawn_session or functools.partial(spawn_in_session, reactor)
        # a copy: every read of os.environ decodes each variable again
        self._environ = dict(os.environ) if environ is None else environ
        self._devnull: int | None = None
        self._channel: socket.socket | None = None  # ours of the shared log writer's channel
        self._writers_retry_at = 0.0  # after a failure to start a log writer, when to retry
        # held around a log writer's spawn: the server is in no program's cgroup then (see
        # ProgramCgroups.lock), so the writer is not born in one
        self.spawn_guard = contextlib.nullcontext()

    def marker(self, record: ManagedRecord) -> str:
        """The RPM_RUN value every process of this program inherits."""
        return f"{self._instance}.{record.id}"

    @property
    def search_path(self) -> str:
        return self._environ.get("PATH", os.defpath)

    def argv_for(self, record: ManagedRecord, executable: str) -> tuple[str, list[str]]:
        """The program to exec and its argv."""
        target = record.argv[0]
        if "/" not in target and "PATH" in record.env:
            target = executable  # resolved on the server's PATH, not the child's
        return target, [target, *record.argv[1:]]

    def prepare(self, record: ManagedRecord) -> str:
        """Check the run can start (its directory, its program); returns the executable."""
        check_cwd(record.cwd)
        executable = resolve_program(record.argv[0], record.cwd, self.search_path)
        if self._allowed is not None and not any(
            fnmatch.fnmatchcase(executable, pattern) for pattern in self._allowed
        ):
            raise NotPermitted(
                f"{executable} is not one of the programs the server's --allow-programs file allows"
            )
        return executable

    def outputs(self, logfiles, record: ManagedRecord, limit: int) -> tuple[dict, Handed | None]:
        """A run's stdout (1) and stderr (2): pipes to a log writer, which creates the log
        files and holds each stream's live file to `limit`, and what the server keeps of
        them (written.py); or, where no log writer can start (the server's Python cannot be
        run again, say), its log files themselves (capped by the server as it reads) and
        None. The caller closes the first, and the second once the run's output is written.

        With a writer, the server creates no file: creating one waits on the filesystem's
        journal, behind the registry's commit, and this runs on the reactor thread."""
        paths = (logfiles.path(record.id, "stdout"), logfiles.path(record.id, "stderr"))
        if self._reactor.seconds() >= self._writers_retry_at:
            try:
                return self.start_log_writer(paths, limit)
            except SpawnFailed as err:
                log.warn("programs write their logs themselves for a minute: {error}", error=err)
                self._writers_retry_at = self._reactor.seconds() + WRITERS_RETRY
        try:
            return logfiles.open_for_child(record.id), None
        except OSError as err:
            raise SpawnFailed(
                f"cannot open the log files for {record.argv[0]!r}: {err.strerror or err}"
            ) from err

    def start_log_writer(self, paths: tuple[str, str], limit: int) -> tuple[dict, Handed]:
        """Hand a run's new pipes to a log writer; returns the ends the program writes to,
        as its stdout (1) and stderr (2), and what the server keeps (see outputs)."""
        out_read, out_write = os.pipe2(os.O_CLOEXEC)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        again = functools.partial(self.hand_over, paths, limit)
        try:
            handed = Handed(again((out_read, err_read)), (out_read, err_read), again)
        except SpawnFailed:
            for fd in (out_read, out_write, err_read, err_write):
                os.close(fd)
            raise
        return {1: out_write, 2: err_write}, handed

    def hand_over(self, paths: tuple[str, str], limit: int, pipes: tuple[int, ...]) -> int:
        """Have the shared log writer (logwriter.py) copy these pipes to the files at paths,
        or a writer of their own; returns the end that reads end-of-file once it is done."""
        done_read, done_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        theirs = (*pipes, done_write)
        try:
            if not self._hand_to_shared_writer(paths, limit, theirs):
                fds = dict(zip((3, 4, 5), theirs, strict=True))
                self._spawn_writer([*paths, str(limit)], fds, ProcessProtocol())
        except OSError as err:
            os.close(done_read)
            raise SpawnFailed(f"cannot start the log writer: {err.strerror or err}") from err
        finally:
            os.close(done_write)
        return done_read

    def _hand_to_shared_writer(
        self, paths: tuple[str, str], limit: int, pipes: tuple[int, ...]
    ) -> bool:
        """Have the shared log writer (logwriter.py --serve, started at the first need) copy
        the run; False if it cannot take it, and the caller starts a writer of its own."""
        if self._channel is None:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._spawn_writer(["--serve"], {3: theirs.fileno()}, _SharedWriter(self, ours))
            finally:
                theirs.close()
            ours.setblocking(False)
            self._channel = ours
        request = "\0".join([*paths, str(limit)]).encode()
        try:
            socket.send_fds(self._channel, [request], list(pipes))
        except OSError:  # the writer is gone or stuck: a new one from the next run on
            self.close_writer_channel()
            return False
        return True

    def close_writer_channel(self, channel: socket.socket | None = None) -> None:
        """Close the channel to the shared log writer, which takes no more runs and ends
        once those it has are done; given a channel, only if it is still the current one."""
        if self._channel is not None and channel in (None, self._channel):
            self._channel.close()
            self._channel = None

    def _spawn_writer(self, arguments: list[str], pipes: dict[int, int], protocol) -> None:
        quiet = self._null()
        with self.spawn_guard:
            self._reactor.spawnProcess(
                protocol,
                sys.executable,
                [sys.executable, "-I", "-S", LOG_WRITER, *arguments],
                env={},
                childFDs={0: quiet, 1: quiet, 2: quiet, **pipes},
            )

    def _null(self) -> int:
        """/dev/null, opened once: every child's stdin, and the log writer's own output."""
        if self._devnull is None:
            self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        return self._devnull

    def spawns_anywhere(self, record: ManagedRecord, umask_of_its_own: bool) -> bool:
        """Whether the run can be spawned from another thread (spawner), one whose umask is
        its own or not: where posix_spawn does all it needs, so not with a directory of its
        own or limits, nor with a test's stand-in for the spawn."""
        if self._umask is not None and not umask_of_its_own:
            return False  # the umask is the process's, and the reactor thread's too
        if getattr(self._spawn_session, "func", None) is not spawn_in_session:
            return False
        return not must_fork(record.cwd, record.settings.get("limits"))

    def spawner(
        self, record: ManagedRecord, executable: str, output_fds: dict[int, int]
    ) -> Callable[[int | None], int]:
        """The spawn of a run that spawns_anywhere, for another thread to call, given the
        directory of a cgroup to clone it into, or None: returns its pid, or raises
        SpawnFailed (or session.IntoCgroupRefused). Everything it reads is taken now, on
        this thread."""
        program, args = self.argv_for(record, executable)
        environment, fdmap = self._environment(record), {0: self._null(), **output_fds}

        def spawn(into: int | None) -> int:
            with self._spawning(record, executable):
                if into is None:
                    return spawn_now(program, args, environment, fdmap)
                return spawn_into_cgroup(executable, args, environment, fdmap, into)

        return spawn

    def take_over(self, record: ManagedRecord, pid: int, protocol):
        """The process transport of a run a spawner started (Twisted reaps it from now)."""
        program, args = self.argv_for(record, record.argv[0])
        return self._spawn_session(protocol, program, args, env=None, childFDs={}, spawned=pid)

    def spawn(
        self,
        record: ManagedRecord,
        executable: str,
        protocol,
        output_fds: dict[int, int],
    ):
        """Spawn the program; returns the process transport. The caller closes output_fds."""
        program, args = self.argv_for(record, executable)
        with self._spawning(record, executable):  # spawned before this returns, umask and all
            return self._spawn_session(
                protocol,
                program,
                args,
                env=self._environment(record),
                path=record.cwd,
                childFDs={0: self._null(), **output_fds},
                limits=record.settings.get("limits") or (),
            )

    def _environment(self, record: ManagedRecord) -> dict[str, str]:
        """The run's environment: the server's, the run's own, and its RPM_RUN marker."""
        return {**self._environ, **record.env, RUN_VARIABLE: self.marker(record)}

    @contextlib.contextmanager
    def _spawning(self, record: ManagedRecord, executable: str) -> Iterator[None]:
        """Around a spawn: the children's umask, where it differs from the server's, and the
        system's refusal as SpawnFailed saying why."""
        server_umask = os.umask(self._umask) if self._umask is not None else None
        try:
            yield
        except OSError as err:
            why = spawn_refusal(err, executable)
            raise SpawnFailed(f"cannot start {record.argv[0]!r}: {why}") from err
        finally:
            if server_umask is not None:
                os.umask(server_umask)

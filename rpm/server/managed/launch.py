"""How a managed program is found and started: PATH lookup, a new session, its log files.

The program is resolved on the server's PATH before anything runs, so a missing or
non-executable program is an error the client sees, not a silent exit. The child becomes the
leader of a new session and process group (through util-linux `setsid`, which execs without
forking, so the pid is the program's), its stdin is /dev/null and its stdout and stderr are
its log files: the server holds no pipe to it.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import sys

from rpm.errors import BadArgument, NotFound, NotPermitted, SpawnFailed
from rpm.server.managed.records import ManagedRecord
from rpm.server.procs.identity import RUN_VARIABLE

_PY_SETSID = "import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])"
_SH = "/bin/sh"
_JOIN_CGROUP = 'echo $$ 2>/dev/null >"$0"; exec "$@"'  # $0: the cgroup.procs to join


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


def check_cwd(cwd: str | None) -> None:
    if cwd is not None and not os.path.isdir(cwd):
        raise BadArgument(f"--cwd {cwd!r} is not an existing directory")


class Launcher:
    """Starts managed programs with reactor.spawnProcess in a session of their own."""

    def __init__(
        self,
        reactor,
        setsid: str | None = None,
        environ: dict | None = None,
        umask: int | None = None,
        allowed: tuple[str, ...] | None = None,
        instance: str = "rpm",
    ):
        self._reactor = reactor
        self._instance = instance  # tells this state directory's runs from another's
        self._allowed = allowed  # --allow-programs patterns; None: anything
        self._umask = umask  # the children's, where it differs from the server's own
        self._setsid = setsid if setsid is not None else shutil.which("setsid")
        self._environ = os.environ if environ is None else environ
        self._devnull: int | None = None  # every child's stdin, opened once

    def marker(self, record: ManagedRecord) -> str:
        """The RPM_RUN value every process of this program inherits."""
        return f"{self._instance}.{record.id}"

    @property
    def search_path(self) -> str:
        return self._environ.get("PATH", os.defpath)

    def argv_for(
        self, record: ManagedRecord, executable: str, cgroup_procs: str | None = None
    ) -> tuple[str, list[str]]:
        """The program to exec and its argv, wrapped so the child first starts a new session
        (leaving the server's process group at once), then joins its cgroup (given its
        cgroup.procs) before the program can fork anything."""
        target = record.argv[0]
        if "/" not in target and "PATH" in record.env:
            target = executable  # resolved on the server's PATH, not the child's
        command = [target, *record.argv[1:]]
        if cgroup_procs is not None:
            command = [_SH, "-c", _JOIN_CGROUP, cgroup_procs, *command]
        if self._setsid:
            return self._setsid, ["setsid", "--", *command]
        return sys.executable, [sys.executable, "-c", _PY_SETSID, *command]

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

    def spawn(
        self,
        record: ManagedRecord,
        executable: str,
        protocol,
        output_fds: dict[int, int],
        cgroup_procs: str | None = None,
    ):
        """Spawn the program; returns the process transport. The caller closes output_fds."""
        program, args = self.argv_for(record, executable, cgroup_procs)
        environment = {**self._environ, **record.env, RUN_VARIABLE: self.marker(record)}
        if self._devnull is None:
            self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        server_umask = os.umask(self._umask) if self._umask is not None else None
        try:  # spawnProcess forks before it returns: the child has the umask set here
            return self._reactor.spawnProcess(
                protocol,
                program,
                args,
                env=environment,
                path=record.cwd,
                childFDs={0: self._devnull, **output_fds},
            )
        except OSError as err:
            raise SpawnFailed(f"cannot start {record.argv[0]!r}: {err.strerror or err}") from err
        finally:
            if server_umask is not None:
                os.umask(server_umask)

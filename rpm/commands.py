"""The protocol's vocabulary: one class per command, carrying its verb, who may use it and
what HELP says of it; the verbs, access sets and help index are derived from those classes.
Aliases, limits, and the typed commands a request line becomes (see server/parser.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, NamedTuple

from rpm.aliases import ALIASES
from rpm.errors import UnknownCommand


class Access(Enum):
    """Who may use a command on a connection."""

    ALWAYS = "always"  # before AUTH, from anywhere
    LOOPBACK_READ = "loopback read-only"  # before AUTH from a local client; reads only
    AUTHENTICATED = "authenticated"  # after AUTH (it reads what strangers may not)
    MUTATING = "mutating"  # after AUTH; it changes the machine, and is audited


class Topic(NamedTuple):
    """What HELP says about a command."""

    usage: str
    summary: str
    details: str
    example: str


@dataclass(frozen=True)
class Help:
    VERB: ClassVar[str] = "HELP"
    ACCESS: ClassVar[Access] = Access.ALWAYS
    HELP: ClassVar[Topic] = Topic(
        "HELP [verb]",
        "list the commands, or explain one",
        "Without a verb, one line per command; with one, its usage, aliases and an example.",
        "HELP STOP",
    )
    topic: str | None = None


@dataclass(frozen=True)
class Ping:
    VERB: ClassVar[str] = "PING"
    ACCESS: ClassVar[Access] = Access.ALWAYS
    HELP: ClassVar[Topic] = Topic(
        "PING",
        "check that the server answers",
        "Answers OK pong.",
        "PING",
    )


@dataclass(frozen=True)
class Mode:
    VERB: ClassVar[str] = "MODE"
    ACCESS: ClassVar[Access] = Access.ALWAYS
    HELP: ClassVar[Topic] = Topic(
        "MODE text|json",
        "choose the reply format of this connection",
        "In json mode every reply and event is one JSON object per line.",
        "MODE json",
    )
    mode: str


@dataclass(frozen=True)
class Auth:
    VERB: ClassVar[str] = "AUTH"
    ACCESS: ClassVar[Access] = Access.ALWAYS
    HELP: ClassVar[Topic] = Topic(
        "AUTH <token>",
        "authenticate this connection",
        (
            "The token is in the server's state directory (token file, mode 0600). Three "
            "wrong tokens close the connection."
        ),
        "AUTH 3q2+7bXk...",
    )
    token: str = field(repr=False)


@dataclass(frozen=True)
class List:
    VERB: ClassVar[str] = "LIST"
    ACCESS: ClassVar[Access] = Access.LOOPBACK_READ
    HELP: ClassVar[Topic] = Topic(
        "LIST [--managed] [pattern]",
        "the process table",
        (
            "--managed keeps the processes this server started; a pattern keeps rows whose "
            "name or command line contains it (case-sensitive)."
        ),
        "LIST --managed sleep",
    )
    managed: bool = False
    pattern: str = ""


@dataclass(frozen=True)
class Host:
    VERB: ClassVar[str] = "HOST"
    ACCESS: ClassVar[Access] = Access.LOOPBACK_READ
    HELP: ClassVar[Topic] = Topic(
        "HOST",
        "the machine's vitals",
        (
            "Hostname, OS and kernel, boot time and uptime, load averages, CPU count and busy "
            "percent (total and per CPU), memory and swap, processes and threads, rpm's "
            "version and how many programs it manages. WATCH sends the same as host events."
        ),
        "HOST",
    )


@dataclass(frozen=True)
class Info:
    VERB: ClassVar[str] = "INFO"
    ACCESS: ClassVar[Access] = Access.LOOPBACK_READ
    HELP: ClassVar[Topic] = Topic(
        "INFO <pid>",
        "one process in detail",
        (
            "The LIST row plus cwd, threads, children, and for a managed process its restarts"
            " and exit status. Ended managed processes answer from the server's records."
        ),
        "INFO 4242",
    )
    pid: int | str  # a program's name until the server resolves it (see protocol.py)


@dataclass(frozen=True)
class Start:
    VERB: ClassVar[str] = "START"
    ACCESS: ClassVar[Access] = Access.MUTATING
    HELP: ClassVar[Topic] = Topic(
        (
            "START [--name NAME] [--cwd DIR] [--env NAME=VALUE]... "
            "[--restart no|on-failure|always] [--max-memory SIZE] [--limit NAME=NUMBER]... "
            "[--] <command line>"
        ),
        "run a program, managed by this server",
        (
            "The command line is split like a POSIX shell would (quotes, backslashes) but no "
            "shell runs it. The program is looked up on the server's PATH. Its output goes to"
            " log files (see LOGS). Put -- before a command line that starts with -. With "
            "--name, the program can be addressed by its name wherever a pid is taken. "
            "--max-memory restarts it when its memory stays above SIZE (512M, 2G); --limit "
            "sets a resource limit (nofile, nproc, core, fsize, stack, memlock, as, cpu)."
        ),
        "START --restart on-failure -- python3 -m http.server 8000",
    )
    argv: tuple[str, ...]
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    restart: str = "no"
    name: str | None = None
    settings: tuple = ()  # (key, value) pairs of a programs file's definition (see records)


@dataclass(frozen=True)
class Stop:
    VERB: ClassVar[str] = "STOP"
    ACCESS: ClassVar[Access] = Access.MUTATING
    HELP: ClassVar[Topic] = Topic(
        "STOP <pid> [grace]",
        "stop a process: SIGTERM, then SIGKILL after grace seconds",
        (
            "A managed process is stopped with its whole process group. The reply comes once "
            "the process is gone and names the signal that ended it. Default grace: 5 s."
        ),
        "STOP 4242 10",
    )
    pid: int | str  # a program's name until the server resolves it (see protocol.py)
    grace: float = 5.0


@dataclass(frozen=True)
class Restart:
    VERB: ClassVar[str] = "RESTART"
    ACCESS: ClassVar[Access] = Access.MUTATING
    HELP: ClassVar[Topic] = Topic(
        "RESTART <pid|name>",
        "stop a managed program and start it again, the same way",
        (
            "Stopped as STOP does (SIGTERM, SIGKILL after 5 s), then started again with the "
            "same command line, directory, environment, restart policy and name; the reply "
            "names the new pid."
        ),
        "RESTART web",
    )
    pid: int | str  # a program's name until the server resolves it (see protocol.py)


@dataclass(frozen=True)
class Signal:
    VERB: ClassVar[str] = "SIGNAL"
    ACCESS: ClassVar[Access] = Access.MUTATING
    HELP: ClassVar[Topic] = Topic(
        "SIGNAL <pid> <signal>",
        "send one signal, by name or number",
        "Names may omit SIG: HUP, SIGUSR1, 15, RTMIN+1.",
        "SIGNAL 4242 HUP",
    )
    pid: int | str  # a program's name until the server resolves it (see protocol.py)
    signum: int


@dataclass(frozen=True)
class Pause:
    VERB: ClassVar[str] = "PAUSE"
    ACCESS: ClassVar[Access] = Access.MUTATING
    HELP: ClassVar[Topic] = Topic(
        "PAUSE <pid>",
        "suspend a process (SIGSTOP)",
        "A managed process is paused with its whole process group.",
        "PAUSE 4242",
    )
    pid: int | str  # a program's name until the server resolves it (see protocol.py)


@dataclass(frozen=True)
class Resume:
    VERB: ClassVar[str] = "RESUME"
    ACCESS: ClassVar[Access] = Access.MUTATING
    HELP: ClassVar[Topic] = Topic(
        "RESUME <pid>",
        "continue a paused process (SIGCONT)",
        "A managed process is resumed with its whole process group.",
        "RESUME 4242",
    )
    pid: int | str  # a program's name until the server resolves it (see protocol.py)


@dataclass(frozen=True)
class Logs:
    VERB: ClassVar[str] = "LOGS"
    ACCESS: ClassVar[Access] = Access.AUTHENTICATED
    HELP: ClassVar[Topic] = Topic(
        "LOGS <pid> [n]",
        "the last n lines (default 100) of a managed process's output",
        "stdout and stderr, interleaved in the order the server saw them.",
        "LOGS 4242 20",
    )
    pid: int | str  # a program's name until the server resolves it (see protocol.py)
    lines: int = 100


@dataclass(frozen=True)
class Follow:
    VERB: ClassVar[str] = "FOLLOW"
    ACCESS: ClassVar[Access] = Access.AUTHENTICATED
    HELP: ClassVar[Topic] = Topic(
        "FOLLOW <pid> [n]",
        "stream a managed process's new output as output events",
        "Until UNFOLLOW <pid> or the end of the session; with n, the last n lines first.",
        "FOLLOW 4242",
    )
    pid: int | str  # a program's name until the server resolves it (see protocol.py)
    backlog: int = 0


@dataclass(frozen=True)
class Unfollow:
    VERB: ClassVar[str] = "UNFOLLOW"
    ACCESS: ClassVar[Access] = Access.AUTHENTICATED
    HELP: ClassVar[Topic] = Topic(
        "UNFOLLOW <pid>",
        "stop the output events of FOLLOW",
        "",
        "UNFOLLOW 4242",
    )
    pid: int | str  # a program's name until the server resolves it (see protocol.py)


@dataclass(frozen=True)
class Watch:
    VERB: ClassVar[str] = "WATCH"
    ACCESS: ClassVar[Access] = Access.LOOPBACK_READ
    HELP: ClassVar[Topic] = Topic(
        "WATCH [seconds] [--delta]",
        "push the process table every few seconds",
        (
            "table events every interval (default 1 s) plus started and exited events; with "
            "--delta, one table then only the rows added, changed and removed."
        ),
        "WATCH 2",
    )
    interval: float = 1.0
    delta: bool = False


@dataclass(frozen=True)
class Unwatch:
    VERB: ClassVar[str] = "UNWATCH"
    ACCESS: ClassVar[Access] = Access.LOOPBACK_READ
    HELP: ClassVar[Topic] = Topic(
        "UNWATCH",
        "stop the events of WATCH",
        "",
        "UNWATCH",
    )


@dataclass(frozen=True)
class Reload:
    VERB: ClassVar[str] = "RELOAD"
    ACCESS: ClassVar[Access] = Access.MUTATING
    HELP: ClassVar[Topic] = Topic(
        "RELOAD",
        "read the programs file again and apply what changed",
        (
            "Programs added are started (if autostart), removed ones stopped, changed ones "
            "restarted with their new definition; the others are left alone. An invalid file "
            "changes nothing. SIGHUP to the server does the same."
        ),
        "RELOAD",
    )


@dataclass(frozen=True)
class History:
    VERB: ClassVar[str] = "HISTORY"
    ACCESS: ClassVar[Access] = Access.AUTHENTICATED
    HELP: ClassVar[Topic] = Topic(
        "HISTORY [n]",
        "the last n audit records (default 20)",
        "Every mutating command: time, peer, whether authenticated, command, result.",
        "HISTORY 5",
    )
    count: int = 20


@dataclass(frozen=True)
class Exit:
    VERB: ClassVar[str] = "EXIT"
    ACCESS: ClassVar[Access] = Access.ALWAYS
    HELP: ClassVar[Topic] = Topic(
        "EXIT",
        "end the session",
        "Answers OK bye and closes the connection.",
        "EXIT",
    )


# Every command, in the order HELP lists them: a new verb is one class here (its parser and
# handler are keyed by the class, and a test holds all three tables to this one).
COMMANDS = (
    Help,
    Ping,
    Mode,
    Auth,
    List,
    Host,
    Info,
    Start,
    Stop,
    Restart,
    Signal,
    Pause,
    Resume,
    Logs,
    Follow,
    Unfollow,
    Watch,
    Unwatch,
    Reload,
    History,
    Exit,
)
BY_VERB = {command.VERB: command for command in COMMANDS}
VERBS = tuple(BY_VERB)


def verbs_with(access: Access) -> frozenset[str]:
    return frozenset(command.VERB for command in COMMANDS if command.ACCESS is access)


ALWAYS_ALLOWED = verbs_with(Access.ALWAYS)
LOOPBACK_READ_ONLY = verbs_with(Access.LOOPBACK_READ)
MUTATING = verbs_with(Access.MUTATING)  # these need AUTH and are audited


def shown(text: str, limit: int = 60) -> str:
    """A user-supplied string, clipped so an error message stays one readable line."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def canonical_verb(word: str) -> str:
    """Map a verb or alias, in any case, to its canonical verb, or raise UnknownCommand."""
    upper = word.upper() if word.isascii() else ""
    verb = ALIASES.get(upper, upper)
    if verb not in VERBS:
        raise UnknownCommand(f"unknown command {shown(word)!r}; send HELP for the list")
    return verb

"""The protocol's vocabulary: verbs, their aliases, who may use them, and the typed commands
a request line becomes (see parser.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from rpm.errors import UnknownCommand

VERBS = (
    "HELP",
    "PING",
    "MODE",
    "AUTH",
    "LIST",
    "INFO",
    "START",
    "STOP",
    "SIGNAL",
    "PAUSE",
    "RESUME",
    "LOGS",
    "FOLLOW",
    "UNFOLLOW",
    "WATCH",
    "UNWATCH",
    "HISTORY",
    "EXIT",
)

ALIASES: dict[str, str] = {
    **dict.fromkeys(
        ("LS", "PS", "LISTAR", "LISTA", "VER", "SHOW", "MOSTRAR", "PROCESOS", "PROCESSES"), "LIST"
    ),
    **dict.fromkeys(
        (
            "RUN",
            "EXEC",
            "LAUNCH",
            "INICIAR",
            "EJECUTAR",
            "LANZAR",
            "CORRER",
            "CREAR",
            "CREATE",
            "BEGIN",
            "EMPEZAR",
        ),
        "START",
    ),
    **dict.fromkeys(
        (
            "KILL",
            "MATAR",
            "DETENER",
            "TERMINAR",
            "END",
            "FINISH",
            "FINALIZAR",
            "CANCEL",
            "CANCELAR",
            "HALT",
            "PARAR",
        ),
        "STOP",
    ),
    **dict.fromkeys(
        ("QUIT", "BYE", "SALIR", "ADIOS", "CLOSE", "CERRAR", "DISCONNECT", "DESCONECTAR"), "EXIT"
    ),
}

# Commands that change the machine: they need AUTH and are audited.
MUTATING = frozenset({"START", "STOP", "SIGNAL", "PAUSE", "RESUME"})
# Served before AUTH on any connection, and (read-only) on a loopback one.
ALWAYS_ALLOWED = frozenset({"HELP", "PING", "MODE", "AUTH", "EXIT"})
LOOPBACK_READ_ONLY = frozenset({"LIST", "INFO", "WATCH", "UNWATCH"})

RESTART_POLICIES = ("no", "on-failure", "always")
WATCH_MIN, WATCH_MAX = 0.1, 3600.0
GRACE_MAX = 3600.0
LOGS_MAX = 100_000
HISTORY_MAX = 10_000
FOLLOW_BACKLOG_MAX = 10_000


@dataclass(frozen=True)
class Help:
    VERB: ClassVar[str] = "HELP"
    topic: str | None = None


@dataclass(frozen=True)
class Ping:
    VERB: ClassVar[str] = "PING"


@dataclass(frozen=True)
class Mode:
    VERB: ClassVar[str] = "MODE"
    mode: str


@dataclass(frozen=True)
class Auth:
    VERB: ClassVar[str] = "AUTH"
    token: str = field(repr=False)


@dataclass(frozen=True)
class List:
    VERB: ClassVar[str] = "LIST"
    managed: bool = False
    pattern: str = ""


@dataclass(frozen=True)
class Info:
    VERB: ClassVar[str] = "INFO"
    pid: int


@dataclass(frozen=True)
class Start:
    VERB: ClassVar[str] = "START"
    argv: tuple[str, ...]
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    restart: str = "no"


@dataclass(frozen=True)
class Stop:
    VERB: ClassVar[str] = "STOP"
    pid: int
    grace: float = 5.0


@dataclass(frozen=True)
class Signal:
    VERB: ClassVar[str] = "SIGNAL"
    pid: int
    signum: int


@dataclass(frozen=True)
class Pause:
    VERB: ClassVar[str] = "PAUSE"
    pid: int


@dataclass(frozen=True)
class Resume:
    VERB: ClassVar[str] = "RESUME"
    pid: int


@dataclass(frozen=True)
class Logs:
    VERB: ClassVar[str] = "LOGS"
    pid: int
    lines: int = 100


@dataclass(frozen=True)
class Follow:
    VERB: ClassVar[str] = "FOLLOW"
    pid: int
    backlog: int = 0


@dataclass(frozen=True)
class Unfollow:
    VERB: ClassVar[str] = "UNFOLLOW"
    pid: int


@dataclass(frozen=True)
class Watch:
    VERB: ClassVar[str] = "WATCH"
    interval: float = 1.0
    delta: bool = False


@dataclass(frozen=True)
class Unwatch:
    VERB: ClassVar[str] = "UNWATCH"


@dataclass(frozen=True)
class History:
    VERB: ClassVar[str] = "HISTORY"
    count: int = 20


@dataclass(frozen=True)
class Exit:
    VERB: ClassVar[str] = "EXIT"


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

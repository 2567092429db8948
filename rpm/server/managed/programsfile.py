"""The programs file (`--programs FILE`, TOML): the programs the server keeps running, by
name. Reading it checks everything a mistake could get wrong, and says what, where and what
is allowed (the nearest key for a typo); an invalid file is refused whole (pure, but for
reading the file)."""

from __future__ import annotations

import difflib
import re
import shlex
import tomllib
from dataclasses import dataclass

from rpm.errors import BadArgument
from rpm.limits import PROGRAM_NAME, PROGRAM_NAME_RULE, RESTART_POLICIES
from rpm.signames import parse_signal

KEYS = (
    "command",
    "argv",
    "cwd",
    "env",
    "restart",
    "autostart",
    "stop_signal",
    "stop_grace",
    "max_memory",
    "limits",
)
LIMITS = ("nofile", "nproc", "core", "fsize", "stack", "memlock", "as", "cpu")
_SIZE = re.compile(r"([0-9]+)\s*([KMGT]?)i?B?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class ProgramsFileError(BadArgument):
    """The programs file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Definition:
    """One program of the file, checked."""

    name: str
    argv: tuple[str, ...]
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    restart: str = "on-failure"
    autostart: bool = True
    stop_signal: int = 15
    stop_grace: float = 5.0
    max_memory: int | None = None
    limits: tuple[tuple[str, int], ...] = ()


def read_programs(path: str) -> dict[str, Definition]:
    """The file's programs by name, or ProgramsFileError saying what is wrong."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as err:
        raise ProgramsFileError(f"cannot read {path}: {err.strerror or err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ProgramsFileError(f"{path}: not valid TOML: {err}") from err
    return parse_programs(document, path)


def parse_programs(document: dict, where: str = "the programs file") -> dict[str, Definition]:
    for key in document:
        if key != "programs":
            raise ProgramsFileError(f"{where}: unknown table {key!r}{_nearest(key, ['programs'])}")
    programs = document.get("programs", {})
    if not isinstance(programs, dict):
        raise ProgramsFileError(f"{where}: 'programs' must be a table of [programs.NAME]")
    return {name: _definition(name, table, where) for name, table in programs.items()}


def _definition(name: str, table, where: str) -> Definition:
    def fail(message: str) -> ProgramsFileError:
        return ProgramsFileError(f"{where}: program {name!r}: {message}")

    if not PROGRAM_NAME.fullmatch(name):
        raise fail(f"a name must be {PROGRAM_NAME_RULE}")
    if not isinstance(table, dict):
        raise fail("must be a table ([programs.NAME] with keys)")
    for key in table:
        if key not in KEYS:
            raise fail(f"unknown key {key!r}{_nearest(key, KEYS)}; keys: {', '.join(KEYS)}")
    try:
        return Definition(name=name, argv=_argv(table), **_options(table))
    except BadArgument as err:
        raise fail(err.message) from err


def _argv(table: dict) -> tuple[str, ...]:
    if ("command" in table) == ("argv" in table):
        raise BadArgument("give either command (a string) or argv (a list of strings)")
    if "command" in table:
        command = _typed(table, "command", str, "a string")
        try:
            argv = shlex.split(command)
        except ValueError as err:
            raise BadArgument(f"command: cannot split it ({err}); check its quotes") from err
    else:
        argv = _typed(table, "argv", list, "a list of strings")
        if not all(isinstance(word, str) for word in argv):
            raise BadArgument("argv must be a list of strings")
    if not argv or not argv[0]:
        raise BadArgument("the command line is empty")
    return tuple(argv)


def _options(table: dict) -> dict:
    options: dict = {}
    if "cwd" in table:
        options["cwd"] = _typed(table, "cwd", str, "a directory (a string)")
    if "env" in table:
        env = _typed(table, "env", dict, 'a table of NAME = "value"')
        if not all(isinstance(value, str) for value in env.values()):
            raise BadArgument("env values must be strings")
        options["env"] = tuple(sorted(env.items()))
    if "restart" in table:
        restart = _typed(table, "restart", str, "no, on-failure or always")
        if restart not in RESTART_POLICIES:
            raise BadArgument(f"restart must be no, on-failure or always, not {restart!r}")
        options["restart"] = restart
    if "autostart" in table:
        options["autostart"] = _typed(table, "autostart", bool, "true or false")
    if "stop_signal" in table:
        options["stop_signal"] = parse_signal(_typed(table, "stop_signal", str, "a name"))
    if "stop_grace" in table:
        grace = _typed(table, "stop_grace", (int, float), "a number of seconds")
        if isinstance(grace, bool) or not 0 <= grace <= 3600:
            raise BadArgument("stop_grace must be a number of seconds from 0 to 3600")
        options["stop_grace"] = float(grace)
    if "max_memory" in table:
        options["max_memory"] = parse_size(table["max_memory"], "max_memory")
    if "limits" in table:
        options["limits"] = parse_limits(_typed(table, "limits", dict, "a table"))
    return options


def _typed(table: dict, key: str, kind, what: str):
    value = table[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadArgument(f"{key} must be {what}, not {type(value).__name__} {value!r}")
    return value


def parse_size(value, what: str) -> int:
    """A size in bytes: a whole number, or text such as "512M" or "2G" (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or int(match[1]) == 0:
        raise BadArgument(f"{what} must be a size such as 512M, 2G or 1048576, not {value!r}")
    return int(match[1]) * _UNITS[match[2].upper()]


def parse_limits(limits: dict) -> tuple[tuple[str, int], ...]:
    """setrlimit values by prlimit's names (nofile = 4096, core = 0)."""
    for key, value in limits.items():
        if key not in LIMITS:
            raise BadArgument(
                f"limits: unknown limit {key!r}{_nearest(key, LIMITS)}; limits: {', '.join(LIMITS)}"
            )
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise BadArgument(f"limits: {key} must be a whole number of at least 0")
    return tuple(sorted(limits.items()))


def _nearest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

"""Turn one request line into a typed command, checking every argument (pure); and show a
request the way logs and the audit may: without its token or environment values."""

from __future__ import annotations

import contextlib
import os
import re
import shlex

from rpm.commands import (
    BY_VERB,
    Auth,
    Exit,
    Follow,
    Help,
    History,
    Host,
    Info,
    List,
    Logs,
    Mode,
    Pause,
    Ping,
    Reload,
    Restart,
    Resume,
    Signal,
    Start,
    Stop,
    Unfollow,
    Unwatch,
    Watch,
    canonical_verb,
    shown,
)
from rpm.errors import BadArgument, UnknownCommand
from rpm.limits import (
    FOLLOW_BACKLOG_MAX,
    GRACE_MAX,
    HISTORY_MAX,
    LOGS_MAX,
    PROGRAM_NAME,
    PROGRAM_NAME_RULE,
    RESTART_POLICIES,
    WATCH_MAX,
    WATCH_MIN,
)
from rpm.server.managed.programsfile import parse_limits, parse_size
from rpm.signames import parse_signal

_DECIMAL = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NUMBER = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", re.ASCII)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_VERB_AND_REST = re.compile(r"[ \t]*([^ \t]+)(?:[ \t]+(.*))?", re.DOTALL)


def split_verb(line: str) -> tuple[str, str]:
    """Split a request into its canonical verb and the rest of the line, untouched. Only spaces
    and tabs separate them (as in shlex): a form feed, or a trailing escaped space, belongs to
    the arguments."""
    match = _VERB_AND_REST.fullmatch(line)
    if match is None:
        raise UnknownCommand("empty request; send HELP for the list of commands")
    return canonical_verb(match[1]), match[2] or ""


def parse_pid(text: str) -> int | str:
    """A pid as a decimal integer (its range is the policy's business, not the parser's), or
    a program's name, which the server resolves to its current pid."""
    if _DECIMAL.fullmatch(text):
        return int(text)
    if PROGRAM_NAME.fullmatch(text):
        return text
    raise BadArgument(
        f"pid must be a decimal integer, or a program's name ({PROGRAM_NAME_RULE}); "
        f"got {shown(text)!r}"
    )


def parse_count(text: str, what: str, maximum: int) -> int:
    """A non-negative whole number no larger than maximum."""
    if not _DECIMAL.fullmatch(text) or not 0 <= int(text) <= maximum:
        raise BadArgument(f"{what} must be a whole number from 0 to {maximum}, got {shown(text)!r}")
    return int(text)


def parse_seconds(text: str, what: str, low: float, high: float) -> float:
    """A decimal number of seconds within [low, high] (no exponents, no inf or nan)."""
    if not _NUMBER.fullmatch(text) or not low <= float(text) <= high:
        raise BadArgument(
            f"{what} must be a number of seconds from {low:g} to {high:g}, got {shown(text)!r}"
        )
    return float(text)


def _words(rest: str, verb: str, low: int, high: int, usage: str) -> list[str]:
    words = rest.split()
    if not low <= len(words) <= high:
        raise BadArgument(f"{verb} takes {usage}")
    return words


def _parse_help(rest: str) -> Help:
    words = _words(rest, "HELP", 0, 1, "at most one verb: HELP [verb]")
    return Help(canonical_verb(words[0]) if words else None)


def _parse_mode(rest: str) -> Mode:
    words = _words(rest, "MODE", 1, 1, "one argument: MODE text or MODE json")
    mode = words[0].lower()
    if mode not in ("text", "json"):
        raise BadArgument(f"MODE must be text or json, got {shown(words[0])!r}")
    return Mode(mode)


def _parse_list(rest: str) -> List:
    rest = rest.strip(" \t")
    managed = False
    while rest.startswith("--"):
        option, remainder = [*rest.split(None, 1), ""][:2]
        if option == "--":
            rest = remainder
            break
        if option != "--managed":
            raise BadArgument(
                f"unknown LIST option {shown(option)!r}; "
                "put -- before a pattern that starts with --"
            )
        managed, rest = True, remainder
    return List(managed=managed, pattern=rest)


def _parse_pid_only(cls, rest: str):
    words = _words(rest, cls.VERB, 1, 1, f"one pid: {cls.VERB} <pid>")
    return cls(parse_pid(words[0]))


def _parse_stop(rest: str) -> Stop:
    words = _words(rest, "STOP", 1, 2, "a pid and an optional grace period: STOP <pid> [seconds]")
    grace = parse_seconds(words[1], "grace", 0, GRACE_MAX) if len(words) > 1 else 5.0
    return Stop(parse_pid(words[0]), grace)


def _parse_signal(rest: str) -> Signal:
    words = _words(rest, "SIGNAL", 2, 2, "a pid and a signal: SIGNAL <pid> <name|number>")
    return Signal(parse_pid(words[0]), parse_signal(words[1]))


def _parse_logs(rest: str) -> Logs:
    words = _words(rest, "LOGS", 1, 2, "a pid and an optional line count: LOGS <pid> [n]")
    count = parse_count(words[1], "n", LOGS_MAX) if len(words) > 1 else 100
    return Logs(parse_pid(words[0]), count)


def _parse_follow(rest: str) -> Follow:
    words = _words(rest, "FOLLOW", 1, 2, "a pid and an optional backlog: FOLLOW <pid> [n]")
    backlog = parse_count(words[1], "n", FOLLOW_BACKLOG_MAX) if len(words) > 1 else 0
    return Follow(parse_pid(words[0]), backlog)


def _parse_watch(rest: str) -> Watch:
    words = rest.split()
    numbers = [word for word in words if word != "--delta"]
    if len(numbers) > 1 or len(words) - len(numbers) > 1:
        raise BadArgument("WATCH takes an optional interval and --delta: WATCH [seconds] [--delta]")
    interval = parse_seconds(numbers[0], "interval", WATCH_MIN, WATCH_MAX) if numbers else 1.0
    return Watch(interval, delta=len(words) > len(numbers))


def _parse_history(rest: str) -> History:
    words = _words(rest, "HISTORY", 0, 1, "an optional count: HISTORY [n]")
    return History(parse_count(words[0], "n", HISTORY_MAX) if words else 20)


def _parse_bare(cls, rest: str):
    _words(rest, cls.VERB, 0, 0, "no arguments")
    return cls()


def _parse_auth(rest: str) -> Auth:
    words = rest.split()
    if len(words) != 1:
        raise BadArgument("AUTH takes the token: AUTH <token>")
    return Auth(words[0])


def _start_option(name: str, value: str, options: dict) -> None:
    if name == "--cwd":
        path = os.path.expanduser(value)
        if not os.path.isabs(path):
            raise BadArgument(f"--cwd must be an absolute path, got {shown(value)!r}")
        options["cwd"] = path
    elif name == "--env":
        key, eq, val = value.partition("=")
        if not eq or not _ENV_NAME.fullmatch(key):  # never echo the value: it may be a secret
            got = f"the name {shown(key)!r}" if eq else "no '='"
            raise BadArgument(f"--env takes NAME=VALUE with NAME like PATH or MY_VAR; got {got}")
        options["env"][key] = val
    elif name == "--max-memory":
        options["settings"]["max_memory"] = parse_size(value, "--max-memory")
    elif name == "--limit":
        limit, eq, number = value.partition("=")
        if not eq or not number.isdigit():
            raise BadArgument(f"--limit takes NAME=NUMBER, as in nofile=4096; got {shown(value)!r}")
        limits = dict(options["settings"].get("limits", ()))
        limits.update(parse_limits({limit: int(number)}))
        options["settings"]["limits"] = sorted(limits.items())
    elif name == "--name":
        if not PROGRAM_NAME.fullmatch(value):
            raise BadArgument(f"--name must be {PROGRAM_NAME_RULE}; got {shown(value)!r}")
        options["name"] = value
    else:
        if value.lower() not in RESTART_POLICIES:
            raise BadArgument(f"--restart must be no, on-failure or always, got {shown(value)!r}")
        options["restart"] = value.lower()


def _parse_start(rest: str) -> Start:
    try:
        tokens = shlex.split(rest)
    except ValueError as err:
        raise BadArgument(f"cannot split the command line ({err}); check its quotes") from err
    options: dict = {"cwd": None, "env": {}, "restart": "no", "name": None, "settings": {}}
    index = 0
    while index < len(tokens) and tokens[index].startswith("-"):
        token = tokens[index]
        index += 1
        if token == "--":
            break
        name, eq, value = token.partition("=")
        if name not in ("--name", "--cwd", "--env", "--restart", "--max-memory", "--limit"):
            raise BadArgument(
                f"unknown START option {shown(token)!r}; "
                "a command line that starts with - needs -- before it"
            )
        if not eq:
            if index >= len(tokens):
                raise BadArgument(f"{name} needs a value")
            value, index = tokens[index], index + 1
        _start_option(name, value, options)
    argv = tuple(tokens[index:])
    if not argv or not argv[0]:
        raise BadArgument("START needs a command line, for example: START sleep 60")
    if any("\0" in part for part in (*argv, *options["env"].values(), options["cwd"] or "")):
        raise BadArgument("the command line contains a NUL character")
    env = tuple(options["env"].items())
    settings = tuple(options["settings"].items())
    return Start(argv, options["cwd"], env, options["restart"], options["name"], settings)


# command class -> its parser, which takes the rest of the line
PARSERS = {
    Help: _parse_help,
    Ping: lambda rest: _parse_bare(Ping, rest),
    Mode: _parse_mode,
    Auth: _parse_auth,
    List: _parse_list,
    Info: lambda rest: _parse_pid_only(Info, rest),
    Start: _parse_start,
    Stop: _parse_stop,
    Restart: lambda rest: _parse_pid_only(Restart, rest),
    Signal: _parse_signal,
    Pause: lambda rest: _parse_pid_only(Pause, rest),
    Resume: lambda rest: _parse_pid_only(Resume, rest),
    Logs: _parse_logs,
    Follow: _parse_follow,
    Unfollow: lambda rest: _parse_pid_only(Unfollow, rest),
    Watch: _parse_watch,
    Unwatch: lambda rest: _parse_bare(Unwatch, rest),
    Reload: lambda rest: _parse_bare(Reload, rest),
    Host: lambda rest: _parse_bare(Host, rest),
    History: _parse_history,
    Exit: lambda rest: _parse_bare(Exit, rest),
}


def parse_arguments(verb: str, rest: str):
    """Build the command object for a canonical verb from the rest of its line."""
    return PARSERS[BY_VERB[verb]](rest)


def parse_line(line: str):
    """Parse a whole request line (already decoded, CR stripped) into a command object."""
    verb, rest = split_verb(line)
    return parse_arguments(verb, rest)


def redact(line: str, command=None) -> str:
    """The request line as it may appear in logs and the audit: no token, no env values.
    `command`, if the line was already parsed, spares parsing it again."""
    if isinstance(command, Start):
        return describe_start(command)
    try:
        verb, rest = split_verb(line)
    except UnknownCommand:
        return "(unknown command)"
    if verb == "AUTH":
        return "AUTH ***"
    if verb == "START":
        return _redact_start(rest)
    return shown(f"{verb} {rest}".rstrip(), REJECTED_START_CHARS)


REJECTED_START_CHARS = 200
REDACT_SCAN = 4 * REJECTED_START_CHARS  # a longer START is shown cut, and never parsed here


def _redact_start(rest: str) -> str:
    """A START not parsed yet (refused before parsing, or by it), as sent but for --env
    values: only its start is looked at, so a huge line costs no more than a short one."""
    if len(rest) <= REDACT_SCAN:
        with contextlib.suppress(BadArgument):
            return describe_start(_parse_start(rest))
    return shown(f"START {_mask_env(rest[:REDACT_SCAN])}", REJECTED_START_CHARS)


# --env and its value: a shell word, quoted parts and all (an unclosed quote runs to the end).
_ENV_OPTION = re.compile(r"""(--env(?:=|[ \t]+))((?:"[^"]*"|'[^']*'|["'].*|[^\s"'])+)""")


def _mask_env(rest: str) -> str:
    """A rejected START's arguments as sent, with whatever follows each --env hidden but the
    variable's name (a malformed name may hold the value, so such a word is hidden whole)."""

    def mask(match: re.Match) -> str:
        name, eq, _ = match[2].partition("=")
        shown_name = name if eq and _ENV_NAME.fullmatch(name) else ""
        return f"{match[1]}{shown_name}{'=' if shown_name else ''}***"

    return _ENV_OPTION.sub(mask, rest)


def describe_start(command: Start) -> str:
    """A START request rebuilt as one line, every option in it, environment values hidden."""
    words = ["START"]
    if command.name:
        words += ["--name", command.name]
    if command.cwd:
        words += ["--cwd", shlex.quote(command.cwd)]
    words += [f"--env {name}=***" for name, _ in command.env]
    if command.restart != "no":
        words += ["--restart", command.restart]
    settings = dict(command.settings)
    if "max_memory" in settings:
        words += ["--max-memory", str(settings["max_memory"])]
    words += [f"--limit {name}={value}" for name, value in settings.get("limits", ())]
    if command.argv[0].startswith("-"):
        words.append("--")
    return " ".join(words) + " " + shlex.join(command.argv)

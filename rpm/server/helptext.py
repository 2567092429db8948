"""What HELP says about each command: usage, one-line summary, details and an example (data)."""

from rpm.commands import ALIASES

# verb -> (usage, summary, details, example)
TOPICS: dict[str, tuple[str, str, str, str]] = {
    "HELP": (
        "HELP [verb]",
        "list the commands, or explain one",
        "Without a verb, one line per command; with one, its usage, aliases and an example.",
        "HELP STOP",
    ),
    "PING": ("PING", "check that the server answers", "Answers OK pong.", "PING"),
    "MODE": (
        "MODE text|json",
        "choose the reply format of this connection",
        "In json mode every reply and event is one JSON object per line.",
        "MODE json",
    ),
    "AUTH": (
        "AUTH <token>",
        "authenticate this connection",
        "The token is in the server's state directory (token file, mode 0600). "
        "Three wrong tokens close the connection.",
        "AUTH 3q2+7bXk...",
    ),
    "LIST": (
        "LIST [--managed] [pattern]",
        "the process table",
        "--managed keeps the processes this server started; a pattern keeps rows whose "
        "name or command line contains it (case-sensitive).",
        "LIST --managed sleep",
    ),
    "INFO": (
        "INFO <pid>",
        "one process in detail",
        "The LIST row plus cwd, threads, children, and for a managed process its restarts "
        "and exit status. Ended managed processes answer from the server's records.",
        "INFO 4242",
    ),
    "START": (
        "START [--cwd DIR] [--env NAME=VALUE]... [--restart no|on-failure|always] [--] "
        "<command line>",
        "run a program, managed by this server",
        "The command line is split like a POSIX shell would (quotes, backslashes) but no "
        "shell runs it. The program is looked up on the server's PATH. Its output goes "
        "to log files (see LOGS). Put -- before a command line that starts with -.",
        "START --restart on-failure -- python3 -m http.server 8000",
    ),
    "STOP": (
        "STOP <pid> [grace]",
        "stop a process: SIGTERM, then SIGKILL after grace seconds",
        "A managed process is stopped with its whole process group. The reply comes once "
        "the process is gone and names the signal that ended it. Default grace: 5 s.",
        "STOP 4242 10",
    ),
    "SIGNAL": (
        "SIGNAL <pid> <signal>",
        "send one signal, by name or number",
        "Names may omit SIG: HUP, SIGUSR1, 15, RTMIN+1.",
        "SIGNAL 4242 HUP",
    ),
    "PAUSE": (
        "PAUSE <pid>",
        "suspend a process (SIGSTOP)",
        "A managed process is paused with its whole process group.",
        "PAUSE 4242",
    ),
    "RESUME": (
        "RESUME <pid>",
        "continue a paused process (SIGCONT)",
        "A managed process is resumed with its whole process group.",
        "RESUME 4242",
    ),
    "LOGS": (
        "LOGS <pid> [n]",
        "the last n lines (default 100) of a managed process's output",
        "stdout and stderr, interleaved in the order the server saw them.",
        "LOGS 4242 20",
    ),
    "FOLLOW": (
        "FOLLOW <pid> [n]",
        "stream a managed process's new output as output events",
        "Until UNFOLLOW <pid> or the end of the session; with n, the last n lines first.",
        "FOLLOW 4242",
    ),
    "UNFOLLOW": ("UNFOLLOW <pid>", "stop the output events of FOLLOW", "", "UNFOLLOW 4242"),
    "WATCH": (
        "WATCH [seconds] [--delta]",
        "push the process table every few seconds",
        "table events every interval (default 1 s) plus started and exited events; with "
        "--delta, one table then only the rows added, changed and removed.",
        "WATCH 2",
    ),
    "UNWATCH": ("UNWATCH", "stop the events of WATCH", "", "UNWATCH"),
    "HISTORY": (
        "HISTORY [n]",
        "the last n audit records (default 20)",
        "Every mutating command: time, peer, whether authenticated, command, result.",
        "HISTORY 5",
    ),
    "EXIT": ("EXIT", "end the session", "Answers OK bye and closes the connection.", "EXIT"),
}


def aliases_of(verb: str) -> list[str]:
    """The aliases that mean verb, in a stable order."""
    return sorted(alias for alias, target in ALIASES.items() if target == verb)


def overview() -> list[str]:
    """HELP without a verb: one line per command, then how to learn more."""
    lines = [f"{verb:<9} {summary}" for verb, (_, summary, _, _) in TOPICS.items()]
    lines.append("Verbs are case-insensitive. HELP <verb> shows usage, aliases and an example.")
    return lines


def topic(verb: str) -> list[str]:
    """HELP <verb>: usage, summary, details, aliases and an example."""
    usage, summary, details, example = TOPICS[verb]
    lines = [f"usage: {usage}", summary]
    if details:
        lines.append(details)
    aliases = aliases_of(verb)
    if aliases:
        lines.append("aliases: " + " ".join(aliases))
    lines.append(f"example: {example}")
    return lines

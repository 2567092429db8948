"""rpmctl's pure parts: its arguments, quoting for the protocol, and its tables."""

from __future__ import annotations

import pytest

from rpmctl.actions import UsageError, quote
from rpmctl.cli import build_parser
from rpmctl.output import colour_wanted, table

ROW = {
    "pid": 42,
    "ppid": 1,
    "user": "alice",
    "name": "evil\x1b[31m",
    "cmdline": ["sleep", "300", "x" * 200],
    "status": "sleeping",
    "cpu": 0.0,
    "rss": 2 * 1024 * 1024,
    "started": 0.0,
    "managed": True,
}


def test_a_table_fits_the_terminal_escapes_controls_and_names_hosts_when_several():
    [header, line] = table([("a:1", [ROW])], width=80, colour=False)
    assert header.split()[:2] == ["PID", "PPID"] and len(line) == 80 and line.endswith("+")
    assert "evil\\x1b[31m" in line and "\x1b" not in line
    merged = table([("a:1", [ROW]), ("bb:2", [ROW])], width=None, colour=False)
    assert [line.split()[0] for line in merged] == ["HOST", "a:1", "bb:2"]
    assert merged[1].endswith("x" * 200), "no cut when not on a terminal"


class Stream:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("tty", "environ", "wanted"),
    [
        (True, {}, True),
        (False, {}, False),
        (True, {"NO_COLOR": ""}, False),
        (True, {"TERM": "dumb"}, False),
    ],
)
def test_colour_only_on_a_terminal_and_never_with_no_color(tty, environ, wanted):
    assert colour_wanted(Stream(tty), environ) is wanted


def test_words_are_quoted_as_the_server_splits_them_and_line_breaks_refused():
    assert quote("a b") == "'a b'" and quote("$(x)") == "'$(x)'" and quote("-x") == "-x"
    with pytest.raises(UsageError, match="line breaks"):
        quote("two\nlines")


def test_start_takes_the_command_after_its_options_untouched():
    args = build_parser().parse_args(["start", "--env", "A=1", "--", "ls", "-l", "--json"])
    assert (args.env, args.argv, args.json) == (["A=1"], ["--", "ls", "-l", "--json"], False)
    args = build_parser().parse_args(["--json", "-H", "h:1", "ps", "--managed"])
    assert (args.json, args.host, args.managed) == (True, ["h:1"], True)

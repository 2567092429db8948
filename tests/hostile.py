"""Hypothesis strategies for hostile input: random verbs and arguments, telnet sequences,
huge and negative numbers, format strings, Unicode, shell metacharacters, raw bytes."""

from __future__ import annotations

from hypothesis import strategies as st

from rpm.commands import ALIASES, VERBS

IAC_SEQUENCES = [
    b"\xff\xf4",
    b"\xff\xfd\x06",
    b"\xff\xfb\x01",
    b"\xff\xfa\x18\x00\xff\xf0",
    b"\xff\xff",
    b"\xff",
]
WORDS = [
    "0",
    "1",
    "-1",
    "-0",
    "+5",
    "007",
    "4194304",
    "4194305",
    "99999999999999999999999",
    "1e9",
    "nan",
    "inf",
    "0x10",
    "1.5",
    "%s",
    "%n%n%n",
    "{0}",
    "{}",
    "%(x)s",
    "$HOME",
    "$(id)",
    "`id`",
    ";",
    "|",
    "&&",
    "> /tmp/x",
    "'",
    '"',
    "\\",
    "--",
    "--cwd",
    "--env",
    "--restart",
    "--managed",
    "--delta",
    "HUP",
    "SIGKILL",
    "RTMIN+99",
    "\x00",
    "\x1b[2J",
    "\u202e",
    "\ud800",
    "漢字",
    "é",
    "\r",
    "\t",
    " ",
    "json",
    "text",
]
VERB_WORDS = [
    *sorted(set(VERBS) | set(ALIASES)),
    "",
    "FROB",
    "l\u0131st",
    "\uff2c\uff49\uff53\uff54",
]


def words() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(WORDS), st.text(max_size=12))


def request_text(verbs=VERB_WORDS) -> st.SearchStrategy[str]:
    """A request line: a verb (any case) and random arguments."""
    verb = st.sampled_from(verbs).flatmap(
        lambda word: st.sampled_from([word, word.lower(), word.title()])
    )
    arguments = st.lists(words(), max_size=6).map(" ".join)
    return st.tuples(verb, arguments).map(lambda parts: f"{parts[0]} {parts[1]}".rstrip())


def request_bytes(verbs=VERB_WORDS) -> st.SearchStrategy[bytes]:
    """A request as bytes, sometimes with telnet junk, bad UTF-8 or CRs inside."""
    text = request_text(verbs).map(lambda line: line.encode("utf-8", "surrogatepass"))
    junk = st.one_of(st.sampled_from(IAC_SEQUENCES), st.binary(max_size=8))
    return st.one_of(text, st.tuples(text, junk).map(b"".join), st.tuples(junk, text).map(b"".join))


NO_MODE = [word for word in VERB_WORDS if word.upper() != "MODE"]


def stream() -> st.SearchStrategy[list[bytes]]:
    """A byte stream of several requests (none changing the mode), cut into packets."""
    endings = st.sampled_from([b"\n", b"\r\n", b""])
    lines = st.lists(st.tuples(request_bytes(NO_MODE), endings), min_size=1, max_size=8)
    joined = lines.map(lambda pairs: b"".join(line + end for line, end in pairs))
    return joined.flatmap(
        lambda data: st.lists(st.integers(0, len(data)), max_size=6).map(
            lambda cuts: [
                data[a:b]
                for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)], strict=True)
            ]
        )
    )

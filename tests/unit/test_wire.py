"""Replies and events on the wire: CRLF, escaping, dot-stuffing, JSON."""

import json

from rpm import wire


def test_escape_text_shows_controls_and_keeps_printable_text():
    assert wire.escape_text("plain text, ñ, 漢字") == "plain text, ñ, 漢字"
    assert wire.escape_text("a\x1b[31mred") == "a\\x1b[31mred"
    assert wire.escape_text("tab\tnew\nline\r") == "tab\\x09new\\x0aline\\x0d"
    assert wire.escape_text("del\x7f c1\x9b") == "del\\x7f c1\\x9b"
    assert wire.escape_text("bidi\u202e rev") == "bidi\\u202e rev"
    assert wire.escape_text("lone \udcff") == "lone \\udcff"


def test_lines_end_in_crlf_and_never_carry_raw_controls():
    assert wire.ok_line() == b"OK\r\n"
    assert wire.ok_line("pong") == b"OK pong\r\n"
    assert wire.err_line("bad-argument", "x\r\ny") == b"ERR bad-argument x\\x0d\\x0ay\r\n"


def test_body_is_dot_stuffed_and_terminated():
    data = wire.body_block(wire.ok_line("3 lines"), [".hidden", "..two", "plain"])
    assert data == b"OK 3 lines\r\n..hidden\r\n...two\r\nplain\r\n.\r\n"


def test_empty_body():
    assert wire.Body(0, "lines", [], {"lines": []}).render(wire.TEXT) == b"OK 0 lines\r\n.\r\n"


def test_replies_render_per_mode():
    ok = wire.Ok("123 started", {"pid": 123})
    assert ok.render(wire.TEXT) == b"OK 123 started\r\n"
    assert json.loads(ok.render(wire.JSON)) == {"ok": True, "pid": 123}
    error = wire.Error("no-such-process", "no process has pid 9")
    assert error.render(wire.TEXT) == b"ERR no-such-process no process has pid 9\r\n"
    assert json.loads(error.render(wire.JSON)) == {
        "ok": False,
        "error": "no-such-process",
        "message": "no process has pid 9",
    }


def test_json_lines_are_ascii_with_no_control_bytes():
    data = wire.json_line({"name": "a\x1b\x7f\x9b\u202e漢\udcff"})
    assert data.endswith(b"\r\n")
    assert all(32 <= byte < 127 for byte in data[:-2])
    assert json.loads(data)["name"] == "a\x1b\x7f\x9b\u202e漢\udcff"


def test_events_are_prefixed_in_text_and_keyed_in_json():
    event = wire.Event("exited", "42 code 0", {"pid": 42, "exit_code": 0})
    assert event.render(wire.TEXT) == b"* exited 42 code 0\r\n"
    assert json.loads(event.render(wire.JSON)) == {"event": "exited", "pid": 42, "exit_code": 0}
    with_body = wire.Event("x", "2 lines", {}, [".a", "b"])
    assert with_body.render(wire.TEXT) == b"* x 2 lines\r\n..a\r\nb\r\n.\r\n"


def test_json_lines_are_compact_ascii_with_del_escaped():
    assert wire.json_line({"a": [1, "x"], "b": "\u00e9\x7f"}) == (
        b'{"a":[1,"x"],"b":"\\u00e9\\u007f"}\r\n'
    )
    assert wire.json_line({"plain": "text"}) == b'{"plain":"text"}\r\n'


def test_an_ok_body_in_json_says_ok_true_first():
    body = wire.Body(1, "process", ["5 sleep"], {"pid": 5})
    assert body.render("json") == b'{"ok":true,"pid":5}\r\n'


def test_an_event_without_text_ends_at_its_name():
    assert wire.Event("gap", "").render("text") == b"* gap\r\n"

"""The programs file: what it accepts, and a message for every mistake."""

from __future__ import annotations

import pytest

from rpm.server.managed.programsfile import (
    Definition,
    ProgramsFileError,
    parse_programs,
    read_programs,
)

EXAMPLE = """
[programs.web]
command = "python3 -m http.server 8000"
cwd = "/srv/site"
env = { PYTHONUNBUFFERED = "1" }
restart = "always"
autostart = true
stop_signal = "INT"
stop_grace = 10
max_memory = "512M"
limits = { nofile = 4096, core = 0 }

[programs.worker]
argv = ["sh", "-c", "work --hard"]
"""


def test_a_complete_file_is_read(tmp_path):
    path = tmp_path / "programs.toml"
    path.write_text(EXAMPLE)
    programs = read_programs(str(path))
    assert programs["web"] == Definition(
        name="web",
        argv=("python3", "-m", "http.server", "8000"),
        cwd="/srv/site",
        env=(("PYTHONUNBUFFERED", "1"),),
        restart="always",
        autostart=True,
        stop_signal=2,
        stop_grace=10.0,
        max_memory=512 * 1024 * 1024,
        limits=(("core", 0), ("nofile", 4096)),
    )
    worker = programs["worker"]
    assert worker.argv == ("sh", "-c", "work --hard") and worker.restart == "on-failure"
    assert worker.autostart and worker.stop_signal == 15 and worker.max_memory is None


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ({"comand": "x"}, "program 'p': unknown key 'comand' (did you mean 'command'?)"),
        ({}, "program 'p': give either command (a string) or argv (a list of strings)"),
        ({"command": "a", "argv": ["a"]}, "give either command"),
        ({"command": 5}, "command must be a string, not int 5"),
        ({"command": "'open"}, "command: cannot split it"),
        ({"command": ""}, "the command line is empty"),
        ({"argv": ["a", 1]}, "argv must be a list of strings"),
        ({"command": "a", "cwd": 3}, "cwd must be a directory (a string)"),
        ({"command": "a", "env": {"A": 1}}, "env values must be strings"),
        ({"command": "a", "restart": "sometimes"}, "restart must be no, on-failure or always"),
        ({"command": "a", "autostart": "yes"}, "autostart must be true or false, not str"),
        ({"command": "a", "stop_signal": "FROB"}, "unknown signal 'FROB'"),
        ({"command": "a", "stop_grace": -1}, "stop_grace must be a number of seconds from 0"),
        ({"command": "a", "stop_grace": True}, "stop_grace must be a number of seconds"),
        ({"command": "a", "max_memory": "lots"}, "max_memory must be a size such as 512M"),
        ({"command": "a", "max_memory": 0}, "max_memory must be a size"),
        ({"command": "a", "limits": {"nofiles": 1}}, "unknown limit 'nofiles' (did you mean"),
        ({"command": "a", "limits": {"core": -1}}, "limits: core must be a whole number"),
        ({"command": "a", "limits": 5}, "limits must be a table"),
    ],
)
def test_every_mistake_names_the_program_the_key_and_what_is_allowed(program, message):
    with pytest.raises(ProgramsFileError) as caught:
        parse_programs({"programs": {"p": program}}, "f.toml")
    assert caught.value.message.startswith("f.toml: program 'p': ")
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"program": {}}, "unknown table 'program' (did you mean 'programs'?)"),
        ({"programs": 5}, "'programs' must be a table of [programs.NAME]"),
        ({"programs": {"9lives": {"command": "a"}}}, "program '9lives': a name must be 1 to 64"),
        ({"programs": {"p": "x"}}, "program 'p': must be a table"),
    ],
)
def test_the_files_shape_is_checked(document, message):
    with pytest.raises(ProgramsFileError, match=r"f\.toml: ") as caught:
        parse_programs(document, "f.toml")
    assert message in caught.value.message


def test_a_syntax_error_names_line_and_column_and_a_missing_file_says_so(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[programs.web]\ncommand = "unclosed\n')
    with pytest.raises(ProgramsFileError, match=r"not valid TOML: .*line 2, column"):
        read_programs(str(path))
    with pytest.raises(ProgramsFileError, match=r"cannot read .*No such file"):
        read_programs(str(tmp_path / "missing.toml"))

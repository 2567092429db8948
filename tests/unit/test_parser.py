"""The request parser and vocabulary: verbs, aliases, arguments and every error reported."""

import pytest

from rpm import commands as c
from rpm.errors import BadArgument, UnknownCommand
from rpm.server import parser as p


@pytest.mark.parametrize(
    ("alias", "verb"),
    [(alias, verb) for alias, verb in c.ALIASES.items()] + [(verb, verb) for verb in c.VERBS],
)
def test_every_alias_and_verb_maps_to_its_command(alias, verb):
    assert c.canonical_verb(alias) == verb
    assert c.canonical_verb(alias.lower()) == verb


def test_contract_aliases_are_all_present():
    list_aliases = [
        "LS",
        "PS",
        "LISTAR",
        "LISTA",
        "VER",
        "SHOW",
        "MOSTRAR",
        "PROCESOS",
        "PROCESSES",
    ]
    start_aliases = [
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
    ]
    stop_aliases = [
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
    ]
    exit_aliases = ["QUIT", "BYE", "SALIR", "ADIOS", "CLOSE", "CERRAR", "DISCONNECT", "DESCONECTAR"]
    for aliases, verb in [
        (list_aliases, "LIST"),
        (start_aliases, "START"),
        (stop_aliases, "STOP"),
        (exit_aliases, "EXIT"),
    ]:
        assert all(c.ALIASES[alias] == verb for alias in aliases)


@pytest.mark.parametrize("word", ["FOO", "LISTT", "l\u0131st", "", "STAR"])
def test_unknown_verbs_are_refused(word):
    with pytest.raises(UnknownCommand):
        c.canonical_verb(word)


def test_verbs_are_case_insensitive_and_arguments_keep_their_case():
    assert p.parse_line("start Sleep 5") == c.Start(("Sleep", "5"))
    assert p.parse_line("sTaRt -- Sleep 5").argv == ("Sleep", "5")


def test_ping_help_exit_and_mode():
    assert p.parse_line("PING") == c.Ping()
    assert p.parse_line("help") == c.Help(None)
    assert p.parse_line("HELP kill") == c.Help("STOP")
    assert p.parse_line("quit") == c.Exit()
    assert p.parse_line("MODE JSON") == c.Mode("json")
    assert p.parse_line("mode text") == c.Mode("text")


@pytest.mark.parametrize(
    "line",
    [
        "PING now",
        "MODE",
        "MODE xml",
        "MODE json text",
        "EXIT later",
        "UNWATCH 3",
        "HELP a b",
        "AUTH",
        "AUTH a b",
    ],
)
def test_wrong_argument_counts_are_bad_arguments(line):
    with pytest.raises(BadArgument):
        p.parse_line(line)


def test_help_of_an_unknown_verb():
    with pytest.raises(UnknownCommand):
        p.parse_line("HELP FROB")


def test_list_options_and_patterns():
    assert p.parse_line("LIST") == c.List(False, "")
    assert p.parse_line("ls --managed") == c.List(True, "")
    assert p.parse_line("LIST --managed sleep 30") == c.List(True, "sleep 30")
    assert p.parse_line("LIST -bash") == c.List(False, "-bash")
    assert p.parse_line("LIST -- --weird") == c.List(False, "--weird")
    with pytest.raises(BadArgument, match="unknown LIST option"):
        p.parse_line("LIST --frob")


@pytest.mark.parametrize("text", ["1.5", "0x10", "", "\u0661\u0662", "12a", "-web", "a" * 65])
def test_pids_must_be_decimal_integers_or_names(text):
    with pytest.raises(BadArgument, match="decimal integer"):
        p.parse_pid(text)


def test_pids_keep_their_sign_for_the_policy_to_judge():
    assert p.parse_pid("007") == 7
    assert p.parse_pid("-1") == -1
    assert p.parse_pid("0") == 0
    assert p.parse_pid("99999999999999999999") == 99999999999999999999


def test_stop_with_and_without_grace():
    assert p.parse_line("STOP 42") == c.Stop(42, 5.0)
    assert p.parse_line("kill 42 0.5") == c.Stop(42, 0.5)
    assert p.parse_line("STOP 42 0") == c.Stop(42, 0.0)
    for bad in (
        "STOP",
        "STOP 42 -1",
        "STOP 42 abc",
        "STOP 42 1e9",
        "STOP 42 nan",
        "STOP 1 2 3",
        "STOP 42 99999",
    ):
        with pytest.raises(BadArgument):
            p.parse_line(bad)


def test_signal_by_name_or_number():
    assert p.parse_line("SIGNAL 42 HUP") == c.Signal(42, 1)
    assert p.parse_line("SIGNAL 42 sigusr1") == c.Signal(42, 10)
    assert p.parse_line("SIGNAL 42 15") == c.Signal(42, 15)
    for bad in ("SIGNAL 42", "SIGNAL 42 FROB", "SIGNAL 42 0", "SIGNAL 42 999", "SIGNAL x! HUP"):
        with pytest.raises(BadArgument):
            p.parse_line(bad)


def test_pause_resume_info_follow():
    assert p.parse_line("PAUSE 7") == c.Pause(7)
    assert p.parse_line("RESUME 7") == c.Resume(7)
    assert p.parse_line("INFO 7") == c.Info(7)
    assert p.parse_line("FOLLOW 7") == c.Follow(7)
    assert p.parse_line("UNFOLLOW 7") == c.Unfollow(7)
    with pytest.raises(BadArgument):
        p.parse_line("PAUSE")


def test_logs_and_history_counts():
    assert p.parse_line("LOGS 7") == c.Logs(7, 100)
    assert p.parse_line("LOGS 7 3") == c.Logs(7, 3)
    assert p.parse_line("HISTORY") == c.History(20)
    assert p.parse_line("HISTORY 5") == c.History(5)
    for bad in ("LOGS 7 -3", "LOGS 7 x", "LOGS 7 100001", "HISTORY -1", "HISTORY 1001"):
        with pytest.raises(BadArgument):
            p.parse_line(bad)


def test_watch_interval_and_delta():
    assert p.parse_line("WATCH") == c.Watch(1.0, False)
    assert p.parse_line("WATCH 2") == c.Watch(2.0, False)
    assert p.parse_line("WATCH 0.5 --delta") == c.Watch(0.5, True)
    assert p.parse_line("WATCH --delta") == c.Watch(1.0, True)
    for bad in (
        "WATCH 0",
        "WATCH 0.01",
        "WATCH 4000",
        "WATCH x",
        "WATCH 1 2",
        "WATCH --delta --delta",
        "WATCH inf",
    ):
        with pytest.raises(BadArgument):
            p.parse_line(bad)


def test_start_splits_like_a_shell_without_running_one():
    command = p.parse_line("""START sh -c 'echo "a b"; exit 3' x\\ y""")
    assert command.argv == ("sh", "-c", 'echo "a b"; exit 3', "x y")
    assert p.parse_line("START echo $HOME `id` ; rm -rf /").argv == (
        "echo",
        "$HOME",
        "`id`",
        ";",
        "rm",
        "-rf",
        "/",
    )
    assert p.parse_line("START echo # not a comment").argv == ("echo", "#", "not", "a", "comment")


def test_start_options():
    command = p.parse_line(
        "START --cwd /tmp --env A=1 --env=B=two\\ words --restart on-failure -- -x --y"
    )
    assert command == c.Start(("-x", "--y"), "/tmp", (("A", "1"), ("B", "two words")), "on-failure")
    assert p.parse_line("START --restart=ALWAYS true").restart == "always"
    assert p.parse_line("START --cwd ~ true").cwd.startswith("/")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("START", "needs a command line"),
        ("START   ", "needs a command line"),
        ("START --", "needs a command line"),
        ("START ''", "needs a command line"),
        ("START 'unbalanced", "quotes"),
        ('START "unbalanced', "quotes"),
        ("START -x", "unknown START option"),
        ("START --frob true", "unknown START option"),
        ("START --cwd", "needs a value"),
        ("START --cwd relative/dir true", "absolute path"),
        ("START --env NOEQUALS true", "NAME=VALUE"),
        ("START --env 1BAD=x true", "NAME=VALUE"),
        ("START --restart sometimes true", "--restart must be"),
        ("START echo a\x00b", "NUL"),
    ],
)
def test_start_errors(line, message):
    with pytest.raises(BadArgument, match=message):
        p.parse_line(line)


def test_redact_hides_tokens_and_environment_values():
    assert p.redact("auth s3cret") == "AUTH ***"
    assert p.redact("START --env PASSWORD=hunter2 --env 'X=a b' -- true") == (
        "START --env PASSWORD=*** --env X=*** true"
    )
    assert p.redact("START 'unbalanced --env A=secret") == "START 'unbalanced --env A=***"
    assert p.redact("kill 12 3") == "STOP 12 3"
    assert p.redact("s3cret-typed-by-mistake") == "(unknown command)"


def test_error_messages_clip_huge_user_input():
    with pytest.raises(UnknownCommand) as caught:
        c.canonical_verb("X" * 10000)
    assert len(caught.value.message) < 200


def test_only_spaces_and_tabs_separate_the_verb_as_in_shlex():
    assert p.parse_line("START echo \x0c").argv == ("echo", "\x0c")
    assert p.parse_line("\tSTART\t echo  x \t").argv == ("echo", "x")
    assert p.parse_line("LIST \x85weird").pattern == "\x85weird"
    with pytest.raises(UnknownCommand):
        p.parse_line("\x0cLIST")


def test_the_arguments_reach_shlex_untouched():
    assert p.parse_line("START echo \\ ").argv == ("echo", " ")
    assert p.parse_line("LIST sleep  \t").pattern == "sleep"
    assert p.parse_line("STOP 5 ") == c.Stop(5)


@pytest.mark.parametrize(
    ("line", "recorded"),
    [
        ("START --restart sometimes sleep 1", "START --restart sometimes sleep 1"),
        ("START --cwd relative/dir sleep 1", "START --cwd relative/dir sleep 1"),
        ("START --env NOEQUALS sleep 1", "START --env *** sleep 1"),
        ("START --env 9X=hunter2 true", "START --env *** true"),
        ("START --env=A='a secret' --bad x", "START --env=A=*** --bad x"),
        ('START --env "A=un closed', "START --env ***"),
    ],
)
def test_a_rejected_start_is_recorded_as_sent_with_env_values_hidden(line, recorded):
    assert p.redact(line) == recorded


def test_a_rejected_start_is_recorded_cut_short():
    recorded = p.redact("START --restart x " + "y" * 1000)
    assert len(recorded) == p.REJECTED_START_CHARS and recorded.endswith("\u2026")


@pytest.mark.parametrize("setting", ["hunter2", "9X=hunter2", "-X=hunter2", "A B=hunter2"])
def test_a_malformed_env_never_echoes_its_value(setting):
    with pytest.raises(BadArgument) as refused:
        p.parse_line(f"START --env '{setting}' true")
    assert "hunter2" not in refused.value.message and "NAME=VALUE" in refused.value.message


def test_a_program_name_stands_for_a_pid_and_start_takes_one():
    assert p.parse_line("STOP web 3") == c.Stop("web", 3.0)
    assert p.parse_line("INFO api.v2") == c.Info("api.v2")
    assert p.parse_line("START --name web -- sleep 9").name == "web"
    for bad in ("START --name 9lives sleep 9", "START --name a/b sleep 9", "START --name= x"):
        with pytest.raises(BadArgument, match="--name must be 1 to 64 letters"):
            p.parse_line(bad)


def test_each_access_class_names_exactly_its_verbs():
    from rpm.commands import Access, verbs_with

    assert verbs_with(Access.ALWAYS) == {"AUTH", "EXIT", "HELP", "MODE", "PING"}
    assert verbs_with(Access.LOOPBACK_READ) == {"HOST", "INFO", "LIST", "UNWATCH", "WATCH"}
    assert verbs_with(Access.AUTHENTICATED) == {"FOLLOW", "HISTORY", "LOGS", "UNFOLLOW"}
    assert verbs_with(Access.MUTATING) == {
        *("PAUSE", "RELOAD", "RESTART", "RESUME", "SIGNAL", "START", "STOP"),
    }


def test_user_text_in_messages_is_clipped_at_60_characters():
    from rpm.commands import shown

    assert shown("x" * 60) == "x" * 60
    assert shown("x" * 61) == "x" * 59 + "\u2026"
    assert shown("y" * 201, 200) == "y" * 199 + "\u2026"


def test_start_memory_and_limits_are_settings_and_limits_accumulate():
    command = p.parse_line(
        "START --max-memory 64M --limit nofile=1024 --limit=nproc=10 --limit nofile=2048 sleep 1"
    )
    assert dict(command.settings) == {
        "max_memory": 64 * 2**20,
        "limits": [("nofile", 2048), ("nproc", 10)],
    }
    assert command.argv == ("sleep", "1")


def test_an_environment_value_keeps_its_own_equals_signs():
    assert p.parse_line("START --env A=b=c true").env == (("A", "b=c"),)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("START --env NOEQUALS true", "got no '='$"),
        ("START --env 1BAD=secret true", "got the name '1BAD'$"),
        (
            "START --limit nofile true",
            r"^--limit takes NAME=NUMBER, as in nofile=4096; got 'nofile'$",
        ),
        ("START --limit nofile=lots true", "got 'nofile=lots'$"),
        ("START --limit =5 true", "unknown limit"),
        ("START --max-memory lots true", "^--max-memory must be a size such as 512M"),
        ("START --name 'two words' true", "^--name must be"),
    ],
)
def test_start_option_errors_say_what_was_given(line, message):
    with pytest.raises(BadArgument, match=message):
        p.parse_line(line)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("STOP", "STOP takes a pid and an optional grace period: STOP <pid> [seconds]"),
        ("STOP 1 2 3", "STOP takes a pid and an optional grace period: STOP <pid> [seconds]"),
        ("SIGNAL 1", "SIGNAL takes a pid and a signal: SIGNAL <pid> <name|number>"),
        ("SIGNAL 1 TERM x", "SIGNAL takes a pid and a signal: SIGNAL <pid> <name|number>"),
        ("LOGS 1 2 3", "LOGS takes a pid and an optional line count: LOGS <pid> [n]"),
        ("FOLLOW 1 2 3", "FOLLOW takes a pid and an optional backlog: FOLLOW <pid> [n]"),
        ("HISTORY 1 2", "HISTORY takes an optional count: HISTORY [n]"),
        ("STOP 5 abc", "grace must be a number of seconds from 0 to 3600, got 'abc'"),
        ("LOGS 5 abc", "n must be a whole number from 0 to 100000, got 'abc'"),
        ("FOLLOW 5 abc", "n must be a whole number from 0 to 10000, got 'abc'"),
        ("FOLLOW 5 10001", "n must be a whole number from 0 to 10000, got '10001'"),
        ("HISTORY abc", "n must be a whole number from 0 to 1000, got 'abc'"),
    ],
)
def test_usage_errors_give_the_whole_usage_or_name_the_bad_number(line, message):
    with pytest.raises(BadArgument) as caught:
        p.parse_line(line)
    assert caught.value.message == message


def test_counts_and_graces_are_read_from_their_place():
    assert p.parse_line("FOLLOW 5 7") == c.Follow(5, 7)
    assert p.parse_line("FOLLOW 5") == c.Follow(5, 0)
    assert p.parse_line("HISTORY 7") == c.History(7)
    assert p.parse_line("HISTORY") == c.History(20)
    assert p.parse_line("LOGS 5 7") == c.Logs(5, 7)
    assert p.parse_line("LOGS 5") == c.Logs(5, 100)
    assert p.parse_line("STOP 5 2.5") == c.Stop(5, 2.5)
    assert p.parse_line("STOP 5") == c.Stop(5, 5.0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "empty request; send HELP for the list of commands"),
        ("HELP a b", "HELP takes at most one verb: HELP [verb]"),
        ("MODE", "MODE takes one argument: MODE text or MODE json"),
        ("MODE xml", "MODE must be text or json, got 'xml'"),
        ("INFO 1 2", "INFO takes one pid: INFO <pid>"),
        ("WATCH 1 2", "WATCH takes an optional interval and --delta: WATCH [seconds] [--delta]"),
        ("WATCH 0.001", "interval must be a number of seconds from 0.1 to 3600, got '0.001'"),
        ("PING x", "PING takes no arguments"),
        ("AUTH", "AUTH takes the token: AUTH <token>"),
        ("START", "START needs a command line, for example: START sleep 60"),
        ("START echo a\x00b", "the command line contains a NUL character"),
        (
            "START -x",
            "unknown START option '-x'; a command line that starts with - needs -- before it",
        ),
        ("LIST --foo", "unknown LIST option '--foo'; put -- before a pattern that starts with --"),
        ("LOGS 5 100001", "n must be a whole number from 0 to 100000, got '100001'"),
        ("STOP 5 3600.5", "grace must be a number of seconds from 0 to 3600, got '3600.5'"),
    ],
)
def test_every_error_message_in_full(line, message):
    with pytest.raises((BadArgument, UnknownCommand)) as caught:
        p.parse_line(line)
    assert caught.value.message == message


def test_the_ranges_include_their_ends():
    assert p.parse_line("LOGS 5 0") == c.Logs(5, 0)
    assert p.parse_line("LOGS 5 100000") == c.Logs(5, 100000)
    assert p.parse_line("STOP 5 3600") == c.Stop(5, 3600.0)
    assert p.parse_line("STOP 5 0") == c.Stop(5, 0.0)


def test_a_start_is_audited_rebuilt_with_every_option_and_no_secret():
    assert p.redact("START --cwd /a\\ b --restart always --env K=v -- -x y") == (
        "START --cwd '/a b' --env K=*** --restart always -- -x y"
    )
    assert p.redact("START --env K=v true") == "START --env K=*** true"
    assert p.redact("START --limit core=0 --max-memory 1K --name web --limit nofile=9 ls") == (
        "START --name web --max-memory 1024 --limit core=0 --limit nofile=9 ls"
    )
    rejected = p.redact("START -bad" + " x" * 300)
    assert rejected.startswith("START -bad x") and len(rejected) == 200

"""The TUI's widgets, rendered to text at fixed sizes with keys typed into the real tree."""

from __future__ import annotations

import itertools

import pytest
from twisted.internet.task import Clock

from rpm.client import CommandError
from tests.fakes import NOW, FakeLink
from tui import keys
from tui.app import HOST_REDRAW_GAP, HOST_REDRAW_SHARE, App
from tui.detail import sparkline
from tui.dialogs import LaunchDialog
from tui.launches import Launch, LaunchHistory
from tui.model import ProcessModel
from tui.table import format_line, header_text


def row(pid, **extra):
    base = {
        "pid": pid,
        "ppid": 1,
        "user": "root",
        "name": "sleep",
        "cmdline": ["sleep", str(pid)],
        "status": "sleeping",
        "cpu": 0.0,
        "rss": 1 << 20,
        "started": NOW,
        "managed": False,
    }
    return {**base, **extra}


def make_app(rows=None, links=None, size=(80, 24)):
    model = ProcessModel()
    links = links or [FakeLink()]
    for link in links:
        model.replace_host(
            link.label, rows if rows is not None else [row(p) for p in (11, 12, 13)], 0.0
        )
    app = App(Clock(), links, model, LaunchHistory(None))
    return app, model, links


def screen(app, size=(80, 24)) -> list[str]:
    app.refresh()
    return [line.decode("utf-8") for line in app.root.render(size, focus=True).text]


def press(app, *typed, size=(80, 24)) -> None:
    for key in typed:
        app.root.keypress(size, key)


def test_every_binding_maps_to_an_app_command():
    for command in keys.KEYMAP.values():
        name = command.split()[0]
        assert callable(getattr(App, f"cmd_{name}")), command


def test_the_table_at_80_by_24_has_header_rows_and_status():
    app, _, _ = make_app()
    lines = screen(app)
    assert len(lines) == 24 and all(len(line) == 80 for line in lines)
    assert lines[0].split()[:6] == ["PID", "USER", "STATE", "%CPU\u25bc", "MEM", "STARTED"]
    assert lines[1].split()[0] == "11" and "sleep 11" in lines[1]
    assert "connected 3 processes" in lines[22]


def test_rows_mark_managed_and_paused_processes_and_escape_controls():
    app, _, _ = make_app(
        [row(5, managed=True, status="stopped", cmdline=["evil\x1b[2J", "a\nb"], name="x\x07")]
    )
    line = screen(app, size=(120, 24))[1]
    assert " MP " in line
    assert "\x1b" not in line and "\\x1b[2J" in line and "\\x0a" in line


def test_format_line_with_hosts_and_tree_prefix():
    model = ProcessModel()
    model.replace_host("web1", [row(1, ppid=0), row(2, ppid=1)], 0.0)
    model.toggle_tree()
    lines = model.lines
    assert format_line(lines[0], NOW, hosts=True).startswith("web1 ")
    assert "[-] sleep 1" in format_line(lines[0], NOW, hosts=False)
    assert "  `- sleep 2" in format_line(lines[1], NOW, hosts=False)
    assert header_text(model, hosts=True).startswith("HOST")


def test_sort_keys_reverse_and_show_direction_in_the_header():
    app, model, _ = make_app([row(1, cpu=1.0), row(2, cpu=2.0)])
    press(app, "N")
    assert "PID\u25b2" in screen(app)[0]
    press(app, "N")
    assert "PID\u25bc" in screen(app)[0]
    press(app, "M", "T", "P")
    assert model.sort == "cpu"


def test_arrow_keys_move_and_the_selection_survives_a_refresh():
    app, model, _ = make_app([row(p) for p in range(10, 60)])
    press(app, "down", "down")
    selected = model.selected
    model.apply_delta(model.selected[0], {"added": [row(5, cpu=99.0)]}, 1.0)
    screen(app)
    assert model.selected == selected
    press(app, "end")
    assert model.lines[model.focus_index()].key == model.selected
    press(app, "home")
    assert model.focus_index() == 0


def test_filter_prompt_applies_on_enter_and_clears_on_escape():
    app, model, _ = make_app([row(1, name="nginx", cmdline=["nginx"]), row(2)])
    press(app, "/", "n", "g", "i", "n", "x")
    assert "filter: nginx" in screen(app)[23]
    assert len(model.lines) == 2, "nothing applies before Enter"
    press(app, "enter")
    assert [line.key[1] for line in model.lines] == [1]
    assert "filter: nginx (1)" in screen(app)[22]
    press(app, "/", "esc")
    assert len(model.lines) == 2


def test_stop_asks_first_and_y_confirms():
    link = FakeLink(answers={"STOP": {"ok": True, "pid": 11, "signal": "SIGTERM"}})
    app, _, _ = make_app(links=[link])
    press(app, "k")
    text = "\n".join(screen(app))
    assert "Stop pid 11?" in text and "sleep 11" in text
    press(app, "n")
    assert link.sent == [] and "Stop pid" not in "\n".join(screen(app))
    press(app, "k", "y")
    assert link.sent == ["STOP 11"]
    assert "11 stopped by SIGTERM" in screen(app)[23]


def test_refused_actions_show_the_servers_code_and_message():
    link = FakeLink(answers={"PAUSE": CommandError("protected", "pid 1 is protected")})
    app, _, _ = make_app([row(1)], links=[link])
    press(app, "p")
    assert "protected: pid 1 is protected" in screen(app)[23]


def test_signal_chooser_sends_the_chosen_signal():
    link = FakeLink(answers={"SIGNAL": {"ok": True, "pid": 11, "signal": "SIGHUP"}})
    app, _, _ = make_app(links=[link])
    press(app, "f9")
    text = "\n".join(screen(app))
    assert all(
        f"SIG{name}" in text
        for name in ("TERM", "KILL", "HUP", "INT", "USR1", "USR2", "STOP", "CONT")
    )
    press(app, "down", "down", "enter")
    assert link.sent == ["SIGNAL 11 HUP"]


def test_pause_toggles_with_the_process_state():
    link = FakeLink(
        answers={
            "PAUSE": {"ok": True, "message": "paused"},
            "RESUME": {"ok": True, "message": "resumed"},
        }
    )
    app, _, _ = make_app([row(11, status="stopped"), row(12)], links=[link])
    press(app, "N", "p", "down", "p")
    assert link.sent == ["RESUME 11", "PAUSE 12"]


def test_launch_dialog_builds_start_with_history_and_selects_the_new_process():
    link = FakeLink(answers={"START": {"ok": True, "pid": 99}})
    app, model, _ = make_app(links=[link])
    app.launches.add(Launch("sleep 5"))
    press(app, "n")
    assert "Launch a program" in "\n".join(screen(app))
    press(app, "up")
    assert "sleep 5" in "\n".join(screen(app))
    press(app, "esc", "f2", *"echo 'a b'", "tab", *"demo", "tab", *"/tmp", "tab")
    press(app, *"A=1 'B=x y'", "tab", "right", " ", "enter")
    assert link.sent == [
        "START --name demo --cwd /tmp --env A=1 --env 'B=x y' --restart on-failure -- echo 'a b'"
    ]
    assert model.selected == (link.label, 99)
    launch = Launch("echo 'a b'", "/tmp", "on-failure", "A=1 'B=x y'", "demo")
    assert app.launches.entries[-1] == launch


def test_launch_dialog_recalls_directory_policy_and_environment(tmp_path):
    path = tmp_path / "history"
    path.write_text("old plain command\n")
    launches = LaunchHistory(str(path))
    launches.add(Launch("make serve", "/srv", "always", "PORT=8000"))
    assert LaunchHistory(str(path)).entries == [Launch("old plain command"), launches.entries[-1]]
    assert path.stat().st_mode & 0o777 == 0o600, "environment values may be secrets"
    dialog = LaunchDialog(launches.entries, "h", lambda line, launch: None)
    dialog.keypress((60,), "up")
    assert dialog.start_line() == "START --cwd /srv --env PORT=8000 --restart always -- make serve"
    dialog.keypress((60,), "up")
    assert dialog.start_line() == "START -- old plain command"


def test_launch_dialog_start_line_quotes_the_directory():
    dialog = LaunchDialog([], "h", lambda line, launch: None)
    dialog.command.set_edit_text("ls -l")
    dialog.cwd.set_edit_text("/tmp/my dir")
    assert dialog.start_line() == "START --cwd '/tmp/my dir' -- ls -l"
    dialog.command.set_edit_text("   ")
    assert dialog.start_line() is None


def test_detail_view_shows_info_and_sparklines():
    info = {
        "ok": True,
        "process": {
            "pid": 11,
            "ppid": 1,
            "user": "root",
            "name": "sleep",
            "cmdline": ["sleep", "11"],
            "status": "sleeping",
            "cwd": "/",
            "threads": 1,
            "children": [],
            "managed": True,
            "restarts": 2,
        },
    }
    app, model, links = make_app(links=[FakeLink(answers={"INFO": info})])
    model.apply_delta(links[0].label, {"changed": [row(11, cpu=50.0)]}, 1.0)
    press(app, "N", "enter")
    text = "\n".join(screen(app, (100, 30)))
    assert "pid 11 on 127.0.0.1:5002" in text and "restarts" in text and "cwd" in text
    assert "CPU" in text and "MEM" in text
    press(app, "esc")
    assert "PID" in screen(app)[0]


def test_detail_sparklines_span_the_last_minute_of_the_reactors_clock():
    info = {"ok": True, "process": {"pid": 11, "name": "sleep", "cmdline": ["sleep"]}}
    app, model, links = make_app(links=[FakeLink(answers={"INFO": info})])
    model.apply_delta(links[0].label, {"changed": [row(11, cpu=90.0)]}, 1.0)
    model.apply_delta(links[0].label, {"changed": [row(11, cpu=10.0)]}, 30.0)
    app.reactor.advance(40.0)  # samples are stamped with the reactor's (monotonic) clock
    press(app, "N", "enter")
    assert "10.0%  (max 90.0%)" in "\n".join(screen(app, (100, 30)))


def test_log_view_follows_output_and_unfollows_on_escape():
    link = FakeLink(answers={"FOLLOW": {"ok": True}, "UNFOLLOW": {"ok": True}})
    app, _, _ = make_app(links=[link])
    press(app, "N", "l")
    assert link.sent == ["FOLLOW 11 200"]
    link.on_output({"event": "output", "pid": 11, "stream": "stdout", "line": "hello"})
    link.on_output({"event": "output", "pid": 11, "stream": "stderr", "line": "bad\x1b[31m"})
    link.on_output({"event": "output", "pid": 99, "stream": "stdout", "line": "not ours"})
    text = "\n".join(screen(app))
    assert "output of pid 11" in text and "hello" in text and "bad\\x1b[31m" in text
    assert "not ours" not in text
    link.on_connected()
    assert link.sent[-1] == "FOLLOW 11 200" and "hello" not in "\n".join(screen(app))
    press(app, "esc")
    assert link.sent[-1] == "UNFOLLOW 11" and link.on_output is None


def test_help_lists_every_key():
    app, _, _ = make_app()
    press(app, "?")
    text = "\n".join(screen(app, (100, 40)))
    for key_names, _ in keys.help_lines():
        assert key_names.split()[0] in text
    press(app, "esc")
    assert "Keys" not in "\n".join(screen(app))


def test_quit_finishes_with_status_zero_and_stops_links():
    app, _, links = make_app()
    press(app, "q")
    assert app.finished.called and links[0].state == "stopped"
    assert app.finished.result == 0


def test_disconnected_host_is_shown_stale_with_its_retry():
    link = FakeLink()
    app, model, _ = make_app(links=[link])
    link.state, link.problem, link.retry_at = "disconnected", "connection lost", 3.0
    model.mark_stale(link.label)
    status = screen(app)[22]
    assert "disconnected, retry in 3 s (connection lost) STALE" in status


def test_multiple_hosts_get_a_host_column():
    app, _, _ = make_app(links=[FakeLink("alpha:5002"), FakeLink("beta:5002")])
    lines = screen(app, (120, 24))
    assert lines[0].startswith("alpha:5002") and lines[1].startswith("beta:5002"), "vitals"
    assert lines[2].startswith("HOST")
    assert any(line.startswith("alpha:5002") for line in lines[3:])
    assert any(line.startswith("beta:5002") for line in lines[3:])
    assert lines[22].startswith(" 2/2 connected \u00b7 6 processes"), "the fleet, summed up"


def test_a_fleet_status_counts_hosts_down_stale_and_refused():
    links = [FakeLink(f"h{n}") for n in range(4)]
    links[1].state, links[1].read_only = "auth failed", True
    links[2].state = "disconnected"
    app, model, _ = make_app(links=links)
    model.mark_stale("h2")
    status = screen(app, (120, 24))[22]
    assert status.startswith(" 3/4 connected \u00b7 1 auth failed \u00b7 1 stale \u00b7 ")


@pytest.mark.parametrize("size", [(80, 24), (60, 15), (200, 60)])
def test_renders_at_any_size(size):
    app, _, _ = make_app()
    for view in ([], ["?"], ["k"], ["n"], ["enter"]):
        press(app, *view, size=size)
        assert len(screen(app, size)) == size[1]
        press(app, "esc", size=size)


def test_sparkline_scales_to_the_maximum():
    assert sparkline([0, 5, 10], 10) == " \u2584\u2588"
    assert sparkline([], 5) == ""
    assert len(sparkline(list(range(100)), 60)) == 60


def test_a_new_sort_shows_and_selects_its_top_rows():
    rows = [row(p, started=NOW + p) for p in range(11, 60)] + [row(10, started=NOW + 54.5)]
    app, model, _ = make_app(rows)
    press(app, "N")
    assert screen(app)[1].split()[0] == "10" and model.selected[1] == 10
    press(app, "down", "down", "down")
    press(app, "T")
    lines = screen(app)
    assert [line.split()[0] for line in lines[1:7]] == ["59", "58", "57", "56", "55", "10"]
    assert model.selected[1] == 59


def test_rows_above_the_selection_stay_visible_when_new_data_resorts_them():
    rows = [row(p, cpu=float(p)) for p in range(10, 60)]
    app, model, links = make_app(rows)
    screen(app)
    press(app, "down", "down")
    assert model.selected[1] == 57
    fewer = [row(p, cpu=float(p)) for p in range(10, 59)]
    model.replace_host(links[0].label, fewer, NOW)
    app.refresh()
    lines = screen(app)
    assert [line.split()[0] for line in lines[1:3]] == ["58", "57"]
    assert model.selected[1] == 57


@pytest.mark.parametrize("key", ["k", "K", "p", "n", "l"])
def test_without_a_token_changing_keys_say_how_to_give_one_and_open_nothing(key):
    link = FakeLink()
    link.read_only = True
    app, _, _ = make_app(links=[link])
    press(app, key)
    text = "\n".join(screen(app))
    assert "read-only" in text and "--token-file" in text and "RPM_TOKEN" in text
    assert app.dialog is None and app.view is None and link.sent == []


def test_the_status_bar_says_read_only_without_a_token():
    link = FakeLink()
    link.read_only = True
    app, _, _ = make_app(links=[link])
    assert "connected read-only" in screen(app)[-2]


def test_an_error_longer_than_the_screen_is_shown_whole():
    app, _, _ = make_app()
    app.say_error("word " * 40 + "END")
    assert "END" in "\n".join(screen(app))


def test_long_help_lines_wrap_under_their_description_at_80_columns():
    app, _, _ = make_app()
    press(app, "?")
    lines = screen(app)
    enter = next(index for index, line in enumerate(lines) if "\u2502Enter " in line)
    description_at = lines[enter].index("details")
    wrapped = lines[enter + 1]
    assert wrapped[wrapped.index("\u2502") + 1 : description_at].strip() == ""
    assert wrapped[description_at].isalpha()


def test_stopping_a_program_waiting_to_restart_says_so():
    message = "stopped: it was waiting to restart, and its restart is cancelled"
    answer = {"ok": True, "pid": 11, "signal": None, "message": message}
    link = FakeLink(answers={"STOP": answer})
    app, _, _ = make_app(links=[link])
    press(app, "k", "y")
    assert f"11 {message}" in "\n".join(screen(app))


def test_a_named_program_shows_its_name_and_the_filter_finds_it():
    app, model, _ = make_app([row(5, managed=True, program="web"), row(6)])
    lines = screen(app)
    assert lines[0].split()[6] == "NAME" and lines[1].split()[6] == "web"
    model.set_filter("web")
    assert [line.key[1] for line in model.lines] == [5]


def test_r_restarts_the_selected_managed_program_after_y():
    app, _, [link] = make_app([row(5, managed=True, program="web")])
    link.answers["RESTART"] = {"ok": True, "pid": 9, "previous": 5, "program": "web"}
    press(app, "r")
    assert "Restart pid 5?" in "\n".join(screen(app))
    press(app, "y")
    assert link.sent[-1] == "RESTART 5"
    assert "5 restarted as 9" in screen(app)[-1]


def test_kernel_threads_are_hidden_until_h_and_m_shows_only_managed_programs():
    kthreadd = row(2, ppid=0, cmdline=None, name="kthreadd")
    worker = row(40, ppid=2, cmdline=None, name="kworker/0:1")
    zombie = row(41, ppid=1, cmdline=None, name="defunct", status="zombie")
    app, model, _ = make_app([row(1, ppid=0), kthreadd, worker, zombie, row(7, managed=True)])
    assert [line.key[1] for line in model.lines] == [1, 7, 41], "a zombie is not a kernel thread"
    press(app, "h")
    assert [line.key[1] for line in model.lines] == [1, 2, 7, 40, 41]
    assert "kernel threads shown" in screen(app)[-1]
    press(app, "m")
    assert [line.key[1] for line in model.lines] == [7]
    press(app, "t")
    assert [line.key[1] for line in model.lines] == [1, 7], "in the tree, with its ancestors"
    press(app, "m", "h")
    assert [line.key[1] for line in model.lines] == [1, 7, 41]


VITALS = {
    "hostname": "web1",
    "cpus": 2,
    "cpu_percent": 30.0,
    "cpu_percent_per_cpu": [50.0, 10.0],
    "memory_total": 16 << 30,
    "memory_used": 4 << 30,
    "swap_total": 2 << 30,
    "swap_used": 0,
    "load": [0.5, 0.25, 0.125],
    "processes": 212,
    "threads": 812,
    "managed": 3,
    "uptime": 3 * 86400 + 4 * 3600,
}


def test_one_host_shows_cpu_memory_and_swap_bars_then_load_and_uptime_and_v_folds_it():
    link = FakeLink()
    link.vitals = VITALS
    app, _, _ = make_app(links=[link])
    lines = screen(app, (120, 24))
    assert lines[0].startswith("1[||||||||||") and "50.0%]" in lines[0] and "2[||" in lines[0]
    assert lines[1].startswith("Mem[|||||") and "4.0G/16.0G]" in lines[1] and "Swp[" in lines[1]
    assert lines[2].startswith("Load 0.50 0.25 0.12  Tasks 212, 812 thr  Managed 3  Uptime 3d04h")
    assert lines[3].split()[0] == "PID"
    press(app, "v")
    assert screen(app, (120, 24))[0].split()[0] == "PID", "folded"


def test_many_cpus_share_one_bar_and_a_fleet_gets_a_line_per_host():
    many = {**VITALS, "cpus": 64, "cpu_percent_per_cpu": [30.0] * 64}
    links = [FakeLink("web1"), FakeLink("web2")]
    links[0].vitals, links[1].vitals, links[1].state = many, None, "auth failed"
    app, _, _ = make_app(links=links)
    lines = screen(app, (120, 24))
    assert lines[0].split()[:5] == ["web1", "connected", "load", "0.50", "cpu"]
    assert "mem  25.0%" in lines[0] and "procs    212" in lines[0]
    assert lines[1].split() == ["web2", "auth", "failed"]
    single = make_app(links=[links[0]])[0]
    assert (
        screen(single, (120, 24))[0].startswith("CPU[||||||")
        and "30.0% of 64]" in screen(single, (120, 24))[0]
    )


def test_what_hosts_send_is_drawn_a_few_times_a_second_what_the_operator_does_at_once():
    """50 hosts each send rows every second: one redraw (a sort of every row) each would
    cost a fifth of a core; they are drawn HOST_REDRAW_GAP apart at least, and an answer to
    the operator at once."""
    app, _, links = make_app()
    redraws = []
    app.refresh = lambda: redraws.append(app.reactor.seconds())
    clock = app.reactor
    for _ in range(50):
        links[0].on_change()
        clock.advance(0.01)
    clock.advance(HOST_REDRAW_GAP)
    gaps = [later - earlier for earlier, later in itertools.pairwise(redraws)]
    assert redraws[0] == pytest.approx(0.01), "the first at once (the turn after)"
    assert len(redraws) == 4 and min(gaps) >= HOST_REDRAW_GAP - 1e-9, "not 50 redraws"
    assert redraws[-1] >= 0.5, "the last rows are drawn too"
    links[0].on_change()
    app.say("stopped 12")
    clock.advance(0)
    assert redraws[-1] == clock.seconds(), "the answer is not held back with the rows"


def test_redraws_for_hosts_rows_keep_within_their_share_of_a_core():
    """A redraw that takes 0.1 s (100,000 rows on a slow machine) waits a second for the
    next one of hosts' rows: a tenth of a core at most."""
    app, _, links = make_app()
    redraws, clock = [], app.reactor
    taking = iter(float(step) * 0.1 for step in range(1000))
    app.timer = lambda: next(taking)
    refresh = app.refresh
    app.refresh = lambda: redraws.append(clock.seconds()) or refresh()
    for _ in range(300):
        links[0].on_change()
        clock.advance(0.01)
    gaps = [later - earlier for earlier, later in itertools.pairwise(redraws)]
    assert gaps and min(gaps) >= 0.1 / HOST_REDRAW_SHARE - 1e-9

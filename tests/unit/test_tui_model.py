"""The TUI's model: sorting, filtering, the tree, a selection that follows the process."""

from tui.model import ProcessModel


def row(
    pid, ppid=1, cpu=0.0, rss=100, started=0.0, name="proc", cmdline=None, user="root", **extra
):
    return {
        "pid": pid,
        "ppid": ppid,
        "user": user,
        "name": name,
        "cmdline": cmdline or [name],
        "status": "sleeping",
        "cpu": cpu,
        "rss": rss,
        "started": started,
        "managed": False,
        **extra,
    }


def pids(model):
    return [line.key[1] for line in model.lines]


def model_with(rows, host="h"):
    model = ProcessModel()
    model.replace_host(host, rows, 0.0)
    return model


def test_default_sort_is_cpu_descending_with_ties_in_pid_order():
    model = model_with([row(3, cpu=1), row(1, cpu=5), row(2, cpu=1), row(4, cpu=9)])
    assert pids(model) == [4, 1, 2, 3]


def test_each_sort_key_and_reversing_with_the_same_key():
    model = model_with(
        [row(1, rss=5, started=3), row(2, rss=9, started=1), row(3, rss=1, started=2)]
    )
    model.set_sort("mem")
    assert pids(model) == [2, 1, 3]
    model.set_sort("mem")
    assert pids(model) == [3, 1, 2]
    model.set_sort("pid")
    assert pids(model) == [1, 2, 3]
    model.set_sort("pid")
    assert pids(model) == [3, 2, 1]
    model.set_sort("start")
    assert pids(model) == [1, 3, 2]


def test_filter_matches_pid_user_name_and_command_line_ignoring_case():
    model = model_with(
        [
            row(10, name="nginx"),
            row(11, user="Alice"),
            row(12, cmdline=["x", "--PORT=80"]),
            row(2010),
        ]
    )
    for text, expected in [
        ("NGINX", [10]),
        ("alice", [11]),
        ("port=80", [12]),
        ("201", [2010]),
        ("", [10, 11, 12, 2010]),
    ]:
        model.set_filter(text)
        assert sorted(pids(model)) == expected


def test_tree_puts_children_under_parents_and_folds_branches():
    model = model_with(
        [row(1, ppid=0), row(2, ppid=1), row(3, ppid=2), row(4, ppid=1), row(9, ppid=77)]
    )
    model.set_sort("pid")
    model.toggle_tree()
    assert [(line.key[1], line.depth) for line in model.lines] == [
        (1, 0),
        (2, 1),
        (3, 2),
        (4, 1),
        (9, 0),
    ]
    assert model.lines[0].has_children and not model.lines[2].has_children
    model.toggle_collapse(("h", 2))
    assert pids(model) == [1, 2, 4, 9]
    assert model.lines[1].collapsed
    model.toggle_collapse(("h", 2))
    assert pids(model) == [1, 2, 3, 4, 9]


def test_a_filtered_tree_keeps_the_ancestors_of_matches():
    model = model_with(
        [
            row(1, ppid=0, name="init"),
            row(2, ppid=1, name="sshd"),
            row(3, ppid=2, name="bash"),
            row(4, ppid=1, name="cron"),
        ]
    )
    model.toggle_tree()
    model.set_filter("bash")
    assert pids(model) == [1, 2, 3]


def test_selection_follows_the_process_across_refreshes_and_sorts():
    model = model_with([row(1, cpu=1), row(2, cpu=2), row(3, cpu=3)])
    model.select(("h", 1))
    assert model.focus_index() == 2
    model.apply_delta("h", {"changed": [row(1, cpu=50)]}, 1.0)
    assert model.focus_index() == 0
    model.set_sort("pid")
    assert model.focus_index() == 0 and model.selected == ("h", 1)
    model.set_filter("zzz")
    assert model.focus_index() == 0
    model.set_filter("")
    assert model.selected_row["pid"] in (1, 2, 3)


def test_a_vanished_selection_moves_to_a_neighbour():
    model = model_with([row(1), row(2), row(3), row(4)])
    model.set_sort("pid")
    model.select(("h", 3))
    assert model.focus_index() == 2
    model.apply_delta("h", {"removed": [3]}, 1.0)
    assert model.focus_index() == 2 and model.selected == ("h", 4)
    model.apply_delta("h", {"removed": [4]}, 2.0)
    assert model.focus_index() == 1 and model.selected == ("h", 2)


def test_a_launched_process_stays_selected_until_its_row_arrives():
    model = model_with([row(1), row(2)])
    model.select(("h", 50))
    model.focus_index()
    assert model.selected == ("h", 50)
    model.apply_delta("h", {"added": [row(50)]}, 1.0)
    assert model.lines[model.focus_index()].key == ("h", 50)


def test_a_pending_selection_gives_up_when_the_process_never_shows():
    model = model_with([row(1), row(2)])
    model.select(("h", 50))
    for moment in (1.0, 2.0, 3.0):
        model.apply_delta("h", {}, moment)
    model.focus_index()
    assert model.selected in (("h", 1), ("h", 2))


def test_hosts_merge_and_go_stale_separately():
    model = model_with([row(1), row(2)], host="a")
    model.replace_host("b", [row(1)], 0.0)
    assert sorted(line.key for line in model.lines) == [("a", 1), ("a", 2), ("b", 1)]
    model.mark_stale("a")
    assert model.stale_hosts == {"a"} and model.count("a") == 2
    model.replace_host("a", [row(3)], 1.0)
    assert model.stale_hosts == set() and model.count() == 2


def test_samples_cover_the_last_minute_holding_values_between_changes():
    model = model_with([row(1, cpu=10.0, rss=5)])
    model.apply_delta("h", {"changed": [row(1, cpu=30.0, rss=7)]}, 30.0)
    samples = model.samples(("h", 1), 59.0)
    assert samples[0] == (10.0, 5) and samples[-1] == (30.0, 7)
    assert len(samples) == 60
    assert model.samples(("h", 1), 200.0) == [(30.0, 7)] * 60
    model.apply_delta("h", {"removed": [1]}, 201.0)
    assert model.samples(("h", 1), 201.0) == []


def test_a_parent_younger_than_its_child_is_a_reused_pid_not_a_parent():
    model = model_with(
        [
            row(1, ppid=0, started=1),
            row(10, ppid=20, started=5),
            row(20, ppid=10, started=9),
            row(30, ppid=20, started=12),
        ]
    )
    model.set_sort("pid")
    model.toggle_tree()
    assert [(line.key[1], line.depth) for line in model.lines] == [
        (1, 0),
        (10, 0),
        (20, 1),
        (30, 2),
    ]

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


def reference_tree(model) -> list[tuple]:
    """The tree view by its definition, walked recursively: a row's parent is its ppid's row
    if older, siblings in sort order, kthreadd's branch hidden, a filter keeping ancestors
    of matches, kernel threads hidden with their branches (unless shown), folded branches
    closed. (key, depth, has children shown, folded) per line."""
    rows = model.rows
    flat = model_with(list(rows.values()))
    flat.sort, flat.reverse = model.sort, model.reverse
    flat.filter, flat.only_managed = model.filter, model.only_managed
    flat.show_kernel = model.show_kernel
    everything = flat._sorted(list(rows))

    def hidden(key):
        kernel = rows[key]["cmdline"] is None and 2 in (key[1], rows[key]["ppid"])
        return kernel and not model.show_kernel

    def parent(key):
        above = (key[0], rows[key]["ppid"])
        if above in rows and (rows[above]["started"], above[1]) < (rows[key]["started"], key[1]):
            return above
        return None

    shown = set(flat._matching()) if model.filter or model.only_managed else set(rows)
    for match in list(shown):
        while parent(match) is not None:
            match = parent(match)  # noqa: PLW2901 (up to the root)
            shown.add(match)
    lines = []

    def visit(key, depth):
        kids = [kid for kid in everything if parent(kid) == key and kid in shown]
        kids = [kid for kid in kids if not hidden(kid)]
        folded = bool(kids) and key in model.collapsed
        lines.append((key, depth, bool(kids), folded))
        for kid in [] if folded else kids:
            visit(kid, depth + 1)

    for key in everything:
        if parent(key) is None and key in shown and not hidden(key):
            visit(key, 0)
    return lines


def test_the_tree_view_matches_its_definition_for_random_tables_filters_and_folds():
    import random

    chance = random.Random(7)
    for _ in range(300):
        count = chance.randrange(1, 25)
        rows = [
            row(
                pid,
                ppid=chance.choice([0, 1, 2, *range(1, count + 3)]),
                cpu=float(chance.randrange(3)),
                started=float(chance.randrange(5)),
                name=chance.choice(["alpha", "beta"]),
            )
            for pid in range(1, count + 3)
        ]
        for line in rows:
            if chance.random() < 0.2:
                line["cmdline"] = None  # a kernel thread, if it is kthreadd or one of its own
        model = model_with(rows)
        model.toggle_tree()
        model.set_sort(chance.choice(["cpu", "pid", "start", "mem"]))
        model.filter = chance.choice(["", "", "alpha", "beta"])
        model.show_kernel = chance.random() < 0.5
        model.collapsed = {("h", pid) for pid in range(1, count + 3) if chance.random() < 0.2}
        model._changed()
        expected = reference_tree(model)
        assert [tuple(line[:1]) + tuple(line[2:]) for line in model.lines] == expected, rows


def test_kernel_threads_are_hidden_as_their_rows_come_and_go():
    """Which rows are kernel threads is kept as rows arrive (hiding them is then a set
    difference, not a pass over 100,000 rows): a pid reused by a process is shown, and a
    host's new table forgets its old kernel threads."""

    def kthread(pid, ppid):
        return {**row(pid, ppid=ppid), "cmdline": None}

    model = model_with([kthread(2, 0), kthread(50, 2), row(7)])
    assert pids(model) == [7]
    model.apply_delta("h", {"removed": [50]}, 1.0)
    model.apply_delta("h", {"added": [row(50, ppid=7)]}, 1.0)
    assert sorted(pids(model)) == [7, 50], "pid 50 is a process now"
    model.apply_delta("h", {"changed": [kthread(7, 2)]}, 1.0)
    assert pids(model) == [50]
    model.replace_host("h", [row(2, ppid=0), row(7)], 2.0)
    assert sorted(pids(model)) == [2, 7], "the new table's rows, none left hidden"
    model.toggle_kernel()
    model.replace_host("h", [kthread(2, 0), row(7)], 3.0)
    assert sorted(pids(model)) == [2, 7], "shown with `h`"


def test_a_delta_that_only_changes_rows_keeps_the_order_and_still_sorts_by_it():
    model = model_with([row(1, cpu=1), row(2, cpu=2), row(3, cpu=3)])
    assert pids(model) == [3, 2, 1]
    model.apply_delta("h", {"changed": [row(1, cpu=9)]}, 1.0)
    assert pids(model) == [1, 3, 2], "re-sorted by the new values"
    model.apply_delta("h", {"changed": [row(4, cpu=5)]}, 1.0)  # a row it did not have
    assert pids(model) == [1, 4, 3, 2], "a row that came, however it came, is listed"

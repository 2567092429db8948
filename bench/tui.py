"""rpm-tui's speed with a large table: applying a snapshot, and redrawing after a key."""

from __future__ import annotations

import random
import time

from twisted.internet.task import Clock

from bench.measure import timed
from tests.fakes import FakeLink
from tui.app import App, tune_garbage_collector
from tui.launches import LaunchHistory
from tui.model import ProcessModel

SIZE = (120, 50)


def rows(count: int, seed: int) -> list[dict]:
    """A plausible process table: a tree ten wide, varied CPU, memory and command lines."""
    chance = random.Random(seed)
    now = time.time()
    return [
        {
            "pid": pid,
            "ppid": 1 if pid % 10 == 2 else pid - 1,
            "user": f"user{pid % 7}",
            "name": f"worker{pid % 50}",
            "status": "sleeping",
            "managed": pid % 50 == 0,
            "cmdline": [f"/usr/bin/worker{pid % 50}", "--queue", f"q{chance.randrange(100)}"],
            "cpu": round(chance.random() * 20, 1),
            "rss": chance.randrange(1 << 20, 1 << 30),
            "started": now - chance.randrange(86400),
        }
        for pid in range(2, count + 2)
    ]


def measure(count: int = 5000, rounds: int = 10) -> dict[str, list[float]]:
    """Seconds to apply a `count`-row snapshot and render, and to redraw after each key."""
    tune_garbage_collector()  # as rpm-tui does
    app = App(Clock(), [FakeLink("bench:5002")], ProcessModel(), LaunchHistory(None))
    snapshots = [rows(count, seed) for seed in range(rounds)]
    applied = []
    for number, snapshot in enumerate(snapshots):
        start = time.perf_counter()
        app.model.replace_host("bench:5002", snapshot, float(number))
        app.refresh()
        app.root.render(SIZE, focus=True)
        applied.append(time.perf_counter() - start)

    def key(name: str):
        def press() -> None:
            app.root.keypress(SIZE, name)
            app.root.render(SIZE, focus=True)

        return press

    keys = {name: timed(key(name), 20) for name in ("down", "page down", "up")}
    keys["sort (P M N T)"] = [sample for name in "PMNT" for sample in timed(key(name), 5)]
    keys["tree (t)"] = timed(key("t"), 10)
    return {"snapshot": applied, **keys}


def fleet_keys(hosts: int = 50, count: int = 2000) -> dict[str, list[float]]:
    """Seconds per key press (move, filter, sort, tree) with `hosts` hosts of `count` rows
    each in one table, as rpm-tui --hosts shows a fleet."""
    tune_garbage_collector()
    links = [FakeLink(f"node{number:02d}") for number in range(hosts)]
    app = App(Clock(), links, ProcessModel(), LaunchHistory(None))
    for number, link in enumerate(links):
        app.model.replace_host(link.label, rows(count, number), 0.0)
    app.refresh()
    app.root.render(SIZE, focus=True)

    def key(*names: str):
        def press() -> None:
            for name in names:
                app.root.keypress(SIZE, name)
            app.root.render(SIZE, focus=True)

        return press

    keys = {
        "move (down, page down)": timed(key("down"), 10) + timed(key("page down"), 10),
        "sort (P M N T)": [sample for name in "PMNT" for sample in timed(key(name), 3)],
        "tree (t)": timed(key("t"), 4),
    }
    keys["filter (/ worker7 Enter, / Esc)"] = timed(key("/", *"worker7", "enter"), 3)
    keys["filter (/ worker7 Enter, / Esc)"] += timed(key("/", "esc"), 3)
    return keys

"""What RELOAD does with a new version of the programs file, with a fake supervisor and
controller: start what was added, stop what was removed, restart what changed, leave the
rest, and never touch a program started by hand."""

from __future__ import annotations

from twisted.internet import defer
from twisted.python.failure import Failure

from rpm.errors import NotFound
from rpm.server.declared import DeclaredPrograms
from rpm.server.managed.program import Managed, Names
from rpm.server.managed.programsfile import parse_programs
from rpm.server.managed.records import ManagedRecord


class FakeSupervisor:
    def __init__(self):
        self.names = Names()
        self.next_pid = 100
        self.missing = {"missing"}  # programs not installed

    def start(self, command):
        if command.argv[0] in self.missing:
            return defer.fail(NotFound("program 'missing' is not on the server's PATH"))
        self.next_pid += 1
        record = ManagedRecord(self.next_pid, command.argv, None, {}, command.restart, 0.0)
        record.pid, record.name, record.settings = (
            self.next_pid,
            command.name,
            dict(command.settings),
        )
        self.names.claim(Managed(record))
        return defer.succeed(record)


class FakeController:
    def __init__(self, supervisor):
        self.supervisor, self.stopped = supervisor, []

    def stop(self, pid, grace, seen=None):
        self.stopped.append((pid, grace))
        program = next(m for m in self.supervisor.names._by_name.values() if m.record.pid == pid)
        program.record.ended_at = 1.0
        self.supervisor.names.release(program)
        return defer.succeed(None)


def file_with(**programs) -> dict:
    return {"programs": programs}


def declared():
    supervisor = FakeSupervisor()
    controller = FakeController(supervisor)
    return DeclaredPrograms("programs.toml", supervisor, controller), supervisor, controller


def apply(programs, document, fresh=False) -> list[str]:
    """Apply a file's contents; the fakes answer at once, so no reactor is needed."""
    outcome = []
    defer.Deferred.fromCoroutine(programs._apply(parse_programs(document), fresh)).addBoth(
        outcome.append
    )
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def test_added_removed_changed_and_unchanged():
    programs, supervisor, controller = declared()
    first = file_with(
        web={"command": "web", "stop_grace": 7},
        worker={"command": "work"},
        idle={"command": "idle", "autostart": False},
    )
    assert apply(programs, first, fresh=True) == [
        "+ web started 101",
        "+ worker started 102",
        "+ idle added, not started (autostart is false)",
    ]
    by_hand = ManagedRecord(1, ("x",), None, {}, "no", 0.0, pid=50, name="manual")
    supervisor.names.claim(Managed(by_hand))
    second = file_with(
        worker={"command": "work --harder"},
        idle={"command": "idle", "autostart": False},
        extra={"command": "extra"},
        manual={"command": "x"},
        broken={"command": "missing"},
    )
    changes = apply(programs, second)
    assert sorted(changes) == sorted(
        [
            "- web stopped",
            "~ worker restarted 103",
            "+ extra started 104",
            "! manual not started: the name is taken by pid 50",
            "! broken not started: program 'missing' is not on the server's PATH",
        ]
    )
    assert controller.stopped == [(101, 7.0), (102, 5.0)], "each stopped with its own grace"
    assert supervisor.names.get("manual").record is by_hand, "never the file's"
    assert sorted(apply(programs, second)) == [
        "! broken not started: program 'missing' is not on the server's PATH",
        "! manual not started: the name is taken by pid 50",
    ], "nothing else changed: only what could not start is tried again"


def test_a_program_that_could_not_start_is_tried_again_at_the_next_reload():
    programs, supervisor, _ = declared()
    document = file_with(tool={"command": "missing"}, web={"command": "web"})
    refused = "! tool not started: program 'missing' is not on the server's PATH"
    assert apply(programs, document, fresh=True) == [refused, "+ web started 101"]
    assert apply(programs, document) == [refused], "the file unchanged, tried again"
    supervisor.missing.clear()  # the program is installed now
    assert apply(programs, document) == ["+ tool started 102"]
    assert apply(programs, document) == [], "running now: left alone"


def test_at_start_a_program_still_running_is_adopted():
    programs, supervisor, _ = declared()
    running = ManagedRecord(1, ("web",), None, {}, "always", 0.0, pid=77, name="web")
    running.settings = {"file": True}
    supervisor.names.claim(Managed(running))
    assert apply(programs, file_with(web={"command": "web"}), fresh=True) == ["= web adopted 77"]

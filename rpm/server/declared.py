"""The programs file in force (`--programs FILE`): its programs are started, or adopted,
when the server starts, and RELOAD (or SIGHUP) applies what changed in it: programs added
are started, removed ones stopped, changed ones restarted with their new definition, those
that could not start tried again, the others left alone. Programs started by hand
(START --name) are never the file's."""

from __future__ import annotations

from twisted.logger import Logger

from rpm.commands import Start
from rpm.errors import LimitReached, RPMError
from rpm.server.managed.programsfile import Definition, read_programs

log = Logger()
FILE = "file"  # in a record's settings: the program is the programs file's


def start_command(definition: Definition) -> Start:
    """The START a definition amounts to; its settings mark it as the file's."""
    settings = {
        FILE: True,
        "stop_signal": definition.stop_signal,
        "stop_grace": definition.stop_grace,
        "limits": [list(pair) for pair in definition.limits],
    }
    if definition.max_memory is not None:
        settings["max_memory"] = definition.max_memory
    return Start(
        definition.argv,
        definition.cwd,
        definition.env,
        definition.restart,
        definition.name,
        tuple(settings.items()),
    )


class DeclaredPrograms:
    """Keeps the programs of one file running, and applies its new versions."""

    def __init__(self, path: str, supervisor, controller):
        self.path = path
        self._supervisor, self._controller = supervisor, controller
        self._current: dict[str, Definition] = {}
        self._not_started: set[str] = set()  # tried again at the next RELOAD, changed or not
        self._applying = False

    async def start(self) -> list[str]:
        """At start-up: each program that still runs is the file's again, the others with
        autostart are started (the file was checked before the server started)."""
        changes = await self._apply(read_programs(self.path), fresh=True)
        for change in changes:
            log.info("programs file {path}: {change}", path=self.path, change=change)
        return changes

    async def reload(self) -> list[str]:
        """RELOAD: read the file again and apply the difference; an invalid file raises
        ProgramsFileError and changes nothing. Returns one line per change."""
        if self._applying:
            raise LimitReached("the programs file is being applied now; RELOAD when it is done")
        return await self._apply(read_programs(self.path), fresh=False)

    async def _apply(self, wanted: dict[str, Definition], fresh: bool) -> list[str]:
        self._applying = True
        try:
            changes = []
            for name in self._current.keys() - wanted.keys():
                if await self._take_down(name):
                    changes.append(f"- {name} stopped")
            for name, definition in wanted.items():
                previous = self._current.get(name)
                if previous == definition and name not in self._not_started:
                    continue
                if previous is not None and await self._take_down(name):
                    changes.append(await self._bring_up(definition, "~", "restarted"))
                else:
                    changes.append(await self._bring_up(definition, "+", "started", fresh))
            self._current = wanted
            self._not_started &= wanted.keys()
        finally:
            self._applying = False
        return changes

    def _ours(self, name: str):
        """The file's program of this name, if it runs or waits to restart."""
        program = self._supervisor.names.get(name)
        if program is None or not program.record.settings.get(FILE):
            return None
        return program if program.running or program.restarting else None

    async def _take_down(self, name: str) -> bool:
        """Stop the file's program of this name, as its definition says; False if none runs."""
        program = self._ours(name)
        if program is None:
            return False
        grace = program.record.settings.get("stop_grace", 5.0)
        await self._controller.stop(program.record.pid, grace)
        return True

    async def _bring_up(self, definition: Definition, mark: str, done: str, fresh=False) -> str:
        """Start (or adopt) a program of the file; one that cannot start is tried again at
        the next RELOAD, changed or not (its interpreter installed, its name freed...)."""
        change = await self._start_or_adopt(definition, mark, done, fresh)
        if change.startswith("!"):
            self._not_started.add(definition.name)
        else:
            self._not_started.discard(definition.name)
        return change

    async def _start_or_adopt(self, definition: Definition, mark: str, done: str, fresh) -> str:
        name = definition.name
        running = self._ours(name)
        if fresh and running is not None:
            return f"= {name} adopted {running.record.pid}"
        holder = self._supervisor.names.get(name)
        if holder is not None and holder is not running:
            return f"! {name} not started: the name is taken by pid {holder.record.pid}"
        if not definition.autostart:
            return f"{mark} {name} added, not started (autostart is false)"
        try:
            record = await self._supervisor.start(start_command(definition))
        except RPMError as err:
            return f"! {name} not started: {err.message}"
        return f"{mark} {name} {done} {record.pid}"

"""What each command does: from a parsed command to a reply, using the server's parts.

A handler takes the connection (its session and the shared core) and the command, and
returns a Reply, or is a coroutine whose result is one. Errors are raised as RPMError.
"""

from __future__ import annotations

import dataclasses
import os
import time

import psutil
from twisted.internet import task

from rpm import commands as c
from rpm import hostinfo
from rpm.errors import AuthFailed, BadArgument, NoSuchProcess, NotManaged
from rpm.infotext import text_lines
from rpm.rows import Row
from rpm.server import helptext
from rpm.server.auth import token_matches
from rpm.server.managed import runinfo
from rpm.server.managed.outputs import output_event
from rpm.server.procs import procinfo
from rpm.server.procs.identity import same_start
from rpm.server.procs.policy import check_possible
from rpm.server.procs.snapshot import TableReply
from rpm.signames import signal_name
from rpm.wire import Body, Ok

MAX_AUTH_FAILURES = 3


def handle_help(conn, command: c.Help):
    lines = helptext.topic(command.topic) if command.topic else helptext.overview()
    return Body(len(lines), "lines", lines, {"topic": command.topic, "help": lines})


def resolve_name(command, core):
    """The command with a program's name in place of a pid replaced by its current pid."""
    target = getattr(command, "pid", None)
    if not isinstance(target, str):
        return command
    program = core.supervisor.names.get(target)
    if program is None or program.record.pid is None:
        raise BadArgument(f"no program is named {target!r} (a pid is a decimal integer)")
    return dataclasses.replace(command, pid=program.record.pid)


async def handle_host(conn, command: c.Host):
    host = (await conn.core.sampler.fresh()).host or {}  # read with the process table
    lines = hostinfo.text_lines(host)
    return Body(len(lines), "fields", lines, {"host": host})


def handle_ping(conn, command: c.Ping):
    return Ok("pong", {"message": "pong"})


def handle_mode(conn, command: c.Mode):
    conn.session.mode = command.mode
    return Ok(f"mode {command.mode}", {"mode": command.mode})


async def handle_auth(conn, command: c.Auth):
    """The right token is answered at once, whatever anyone else did; each wrong one waits
    longer than the last one from the same peer (all of loopback counts as one peer)."""
    core, session = conn.core, conn.session
    if core.token is None or token_matches(core.token, command.token):
        session.authenticated = True
        return Ok("authenticated", {"message": "authenticated"})
    session.auth_failures += 1
    now = core.reactor.seconds()
    core.throttle.failed(session.throttle_key, now)
    await task.deferLater(core.reactor, core.throttle.delay(session.throttle_key, now))
    left = MAX_AUTH_FAILURES - session.auth_failures
    if left <= 0:
        conn.after_reply(conn.close)
        raise AuthFailed(f"wrong token; {MAX_AUTH_FAILURES} failures, closing the connection")
    raise AuthFailed(
        f"wrong token; {left} more {'try' if left == 1 else 'tries'} on this connection"
    )


async def handle_list(conn, command: c.List):
    snapshot = await conn.core.sampler.fresh()
    conn.session.seen = snapshot
    return TableReply(snapshot, command.managed, command.pattern)


async def handle_info(conn, command: c.Info):
    core = conn.core
    check_possible(command.pid)
    program = core.controller.program(command.pid, conn.session.seen_started(command.pid))
    if program is not None and program.restarting:
        restart_at = core.supervisor.restart_epoch(program)
        details = runinfo.from_record(program.record, restart_at=restart_at)
        details["restart_blocked"] = program.blocked
    else:
        pid = program.record.pid if program is not None else command.pid
        details = await _info_of(core, pid)
    if not conn.session.authenticated:
        details = for_stranger(details)
    lines = text_lines(details)
    return Body(len(lines), "fields", lines, {"process": details})


# What INFO tells a client before AUTH: the contract's keys, but no more than `ps` shows
# anyone. Where a process runs, its executable and environment names need AUTH, and so
# does the command line of a run that has ended (it may carry secrets long after).
STRANGER_FIELDS = frozenset(Row._fields) | {"threads", "children", "restarts"}
STRANGER_FIELDS |= {"exit_code", "exit_signal"}


def for_stranger(details: dict) -> dict:
    """INFO's fields as a client without the token may see them."""
    shown = {key: value for key, value in details.items() if key in STRANGER_FIELDS}
    shown["cwd"] = None
    if details.get("status") == "dead":
        shown["cmdline"] = None
    return shown


async def _info_of(core, pid: int) -> dict:
    """A process read live (with its managed fields if it is one of ours), or a managed run
    that has ended, from the records."""
    record = await core.supervisor.record_for_pid(pid)
    try:
        details = await core.in_thread(procinfo.read_live, pid)
    except NoSuchProcess:
        if record is None:
            raise
        return runinfo.from_record(record)
    if record is not None and same_start(record.started, details["started"]):
        details.update(runinfo.managed_fields(record))
        cgroups = core.supervisor.cgroups
        if cgroups is not None and cgroups.exists(record.id):
            details.update(cgroups.usage(record.id))  # the whole program's CPU (and memory)
    if pid == os.getpid():
        details["containment"] = core.containment  # how STOP finds a program's processes
    row = core.sampler.latest.by_pid.get(pid) if core.sampler.latest else None
    if row is not None and same_start(row.started, details["started"]):
        details["cpu"] = row.cpu
    return details


async def handle_start(conn, command: c.Start):
    record = await conn.core.supervisor.start(command)  # its started event refreshes the table
    fields = {"pid": record.pid, "message": "started", "argv": list(record.argv), "id": record.id}
    return Ok(f"{record.pid} started", {**fields, "program": record.name})


async def handle_restart(conn, command: c.Restart):
    seen = conn.session.seen_started(command.pid)
    record = await conn.core.controller.restart(command.pid, seen)
    fields = {"pid": record.pid, "previous": command.pid, "program": record.name}
    return Ok(f"{record.pid} restarted", {**fields, "message": "restarted"})


async def handle_reload(conn, command: c.Reload):
    declared = conn.core.declared
    if declared is None:
        raise BadArgument("this server has no programs file; start it with --programs FILE")
    changes = await declared.reload()
    return Body(len(changes), "changes", changes, {"changes": changes})


async def handle_stop(conn, command: c.Stop):
    seen = conn.session.seen_started(command.pid)
    stopped = await conn.core.controller.stop(command.pid, command.grace, seen)
    fields = {"pid": command.pid, "processes": stopped.processes}
    if stopped.signum is None:
        text = "stopped: it was waiting to restart, and its restart is cancelled"
        return Ok(f"{command.pid} {text}", {**fields, "signal": None, "message": text})
    name = signal_name(stopped.signum)  # the text stays the contract's; JSON has the count
    return Ok(f"{command.pid} stopped by {name}", {**fields, "signal": name})


def handle_signal(conn, command: c.Signal):
    conn.core.controller.signal(command.pid, command.signum, conn.session.seen_started(command.pid))
    name = signal_name(command.signum)
    return Ok(f"{command.pid} sent {name}", {"pid": command.pid, "signal": name})


async def handle_pause(conn, command: c.Pause):
    await conn.core.controller.pause(command.pid, conn.session.seen_started(command.pid))
    return Ok(f"{command.pid} paused", {"pid": command.pid, "message": "paused"})


def handle_resume(conn, command: c.Resume):
    conn.core.controller.resume(command.pid, conn.session.seen_started(command.pid))
    return Ok(f"{command.pid} resumed", {"pid": command.pid, "message": "resumed"})


async def managed_record(conn, pid: int):
    """The managed run with this pid, or NotManaged / NoSuchProcess."""
    check_possible(pid)
    record = await conn.core.supervisor.record_for_pid(pid)
    if record is not None:
        return record
    if psutil.pid_exists(pid):
        raise NotManaged(f"pid {pid} was not started by this server, so it has no logs here")
    raise NoSuchProcess(f"no managed process has had pid {pid}")


ROTATED_AWAY = "older output was cut away by the log cap"


async def handle_logs(conn, command: c.Logs):
    record = await managed_record(conn, command.pid)
    logfiles = conn.core.logfiles

    def read() -> tuple[list, bool]:
        lines = logfiles.tail(record.id, command.lines)
        return lines, len(lines) < command.lines and logfiles.rotated(record.id)

    lines, cut_short = await conn.core.in_thread(read)
    texts = [line.text for line in lines]
    fields = {"pid": command.pid, "lines": texts, "streams": [line.stream for line in lines]}
    if cut_short:  # the range asked for reaches back past what is kept: say so
        fields["note"] = ROTATED_AWAY
    noun = f"lines ({ROTATED_AWAY})" if cut_short else "lines"
    return Body(len(lines), noun, texts, fields)


async def handle_follow(conn, command: c.Follow):
    record = await managed_record(conn, command.pid)
    logfiles = conn.core.logfiles
    offsets = logfiles.sizes(record.id)
    backlog = []
    if command.backlog:
        backlog = await conn.core.in_thread(logfiles.tail, record.id, command.backlog, offsets)

    def begin() -> None:
        for line in backlog:
            conn.send_event(output_event(command.pid, line.stream, line.text))
        conn.follow(command.pid, record.id, offsets)

    conn.after_reply(begin)
    return Ok(f"following {command.pid}", {"pid": command.pid, "message": "following"})


def handle_unfollow(conn, command: c.Unfollow):
    if not conn.unfollow(command.pid):
        raise BadArgument(f"this connection is not following {command.pid}")
    return Ok(f"not following {command.pid}", {"pid": command.pid, "message": "not following"})


def handle_watch(conn, command: c.Watch):
    conn.start_watch(command.interval, command.delta)
    return Ok(
        "watching", {"message": "watching", "interval": command.interval, "delta": command.delta}
    )


def handle_unwatch(conn, command: c.Unwatch):
    conn.stop_watch()
    return Ok("not watching", {"message": "not watching"})


async def handle_history(conn, command: c.History):
    conn.core.flush_audit()  # what is pending goes in first (the store runs calls in order)
    records = await conn.core.store.history(command.count)
    lines = [
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.time))} {r.peer} "
        f"{'auth' if r.authenticated else 'anon'} {r.command} -> {r.result}"
        for r in records
    ]
    entries = [
        {
            "time": r.time,
            "peer": r.peer,
            "authenticated": r.authenticated,
            "command": r.command,
            "result": r.result,
        }
        for r in records
    ]
    return Body(len(lines), "records", lines, {"history": entries})


def handle_exit(conn, command: c.Exit):
    conn.after_reply(conn.close)
    return Ok("bye", {"message": "bye"})


HANDLERS = {
    c.Help: handle_help,
    c.Ping: handle_ping,
    c.Mode: handle_mode,
    c.Auth: handle_auth,
    c.List: handle_list,
    c.Info: handle_info,
    c.Start: handle_start,
    c.Restart: handle_restart,
    c.Reload: handle_reload,
    c.Host: handle_host,
    c.Stop: handle_stop,
    c.Signal: handle_signal,
    c.Pause: handle_pause,
    c.Resume: handle_resume,
    c.Logs: handle_logs,
    c.Follow: handle_follow,
    c.Unfollow: handle_unfollow,
    c.Watch: handle_watch,
    c.Unwatch: handle_unwatch,
    c.History: handle_history,
    c.Exit: handle_exit,
}

"""Programs addressed by name (START --name): every verb that takes a pid takes a name, a
name is one program's while it runs or waits to restart, and it survives a server restart."""

from __future__ import annotations

import time

import pytest_twisted

from rpm.server.managed import rotation
from tests.support import connect, pid_alive, sleep, wait_for


async def json_client(server):
    client = await connect(server.port, server.token)
    await client.request("MODE json")
    return client


@pytest_twisted.ensureDeferred
async def test_every_verb_that_takes_a_pid_takes_a_name(server):
    client = await json_client(server)
    started = await client.json("START --name web -- sh -c 'echo ready; exec sleep 300'")
    pid = started["pid"]
    assert started["program"] == "web"
    [row] = (await client.json("LIST --managed"))["processes"]
    assert (row["pid"], row["program"]) == (pid, "web")
    assert [r["pid"] for r in (await client.json("LIST web"))["processes"]] == [pid]
    assert (await client.json("INFO web"))["process"]["pid"] == pid
    assert (await client.json("SIGNAL web CONT"))["pid"] == pid
    assert (await client.json("PAUSE web"))["pid"] == pid
    assert (await client.json("RESUME web"))["pid"] == pid
    await wait_for(lambda: rotation.stream_size(f"{server.state_dir}/logs/1.out") == 6)
    assert (await client.json("LOGS web 1"))["lines"] == ["ready"]
    assert (await client.json("FOLLOW web"))["pid"] == pid
    assert (await client.json("UNFOLLOW web"))["ok"]
    stopped = await client.json("STOP web")
    assert (stopped["pid"], stopped["signal"]) == (pid, "SIGTERM")
    assert not pid_alive(pid)


@pytest_twisted.ensureDeferred
async def test_a_name_is_one_programs_until_it_ends_for_good(server):
    client = await json_client(server)
    first = (await client.json("START --name api sleep 300"))["pid"]
    taken = await client.json("START --name api sleep 300")
    assert taken == {
        "ok": False,
        "error": "bad-argument",
        "message": f"name 'api' is taken by pid {first}",
    }
    unknown = await client.json("STOP nosuch")
    assert (
        unknown["error"] == "bad-argument" and "no program is named 'nosuch'" in unknown["message"]
    )
    await client.json("STOP api")
    again = await client.json("START --name api sleep 300")
    assert again["ok"] and again["pid"] != first, "free again once it ended"
    await client.json("STOP api")


@pytest_twisted.ensureDeferred
async def test_a_name_follows_its_program_across_restarts(server):
    client = await json_client(server)
    first = (await client.json("START --name flaky --restart always -- sh -c 'exit 3'"))["pid"]

    async def restarted() -> bool:
        return (await client.json("INFO flaky"))["process"]["pid"] != first

    assert await wait_for_async(restarted)
    listed = (await client.json("LIST flaky"))["processes"]
    assert listed and all(row["program"] == "flaky" for row in listed)
    await client.json("STOP flaky")


async def wait_for_async(predicate, timeout: float = 30.0):
    """Await predicate() until it is true (it asks the server, so it cannot be sync)."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await sleep(0.1)
    return True


@pytest_twisted.ensureDeferred
async def test_restart_stops_and_starts_the_same_program_again(server):
    watcher = await connect(server.port)
    assert await watcher.request("WATCH 3600") == "OK watching"
    client = await json_client(server)
    script = "echo run; exec sleep 300"
    first = await client.json(f"START --name web --cwd /tmp --env A=1 -- sh -c '{script}'")
    await wait_for(lambda: rotation.stream_size(f"{server.state_dir}/logs/1.out") == 4)
    restarted = await client.json("RESTART web")
    assert restarted["ok"] and restarted["previous"] == first["pid"]
    assert not pid_alive(first["pid"]), "the old run was stopped"
    details = (await client.json("INFO web"))["process"]
    assert details["pid"] == restarted["pid"] and details["restarts"] == 1
    assert (details["cwd"], details["env"], details["program"]) == ("/tmp", ["A"], "web")
    await wait_for(lambda: rotation.stream_size(f"{server.state_dir}/logs/1.out") == 8)
    assert (await client.json("LOGS web"))["lines"] == ["run", "run"], "one program, one log"
    events = []
    while not any(line.startswith("* restarted ") for line in events):
        events.append(await watcher.line())
    assert f"* restarted {restarted['pid']} web" in events
    by_pid = await client.json(f"RESTART {restarted['pid']}")
    assert by_pid["ok"] and by_pid["previous"] == restarted["pid"]
    assert (await client.json("RESTART 1"))["error"] in ("not-managed", "not-permitted")
    await client.json("STOP web")

"""Nothing escapes and nobody is locked out: threads, AUTH under attack, what strangers see
(real servers, real processes)."""

from __future__ import annotations

import os

from tests.servers import talk
from tests.support import wait_until


def server_threads(pid: int) -> list[int]:
    """The server's thread ids other than its main thread."""
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid]


def test_stop_of_a_server_thread_is_protected_and_the_server_lives(run_server):
    server = run_server()
    talk(server.port, "LIST", "EXIT")  # the sampler's worker thread exists from now on
    threads = wait_until(lambda: server_threads(server.process.pid))
    for tid in threads[:3]:
        lines = talk(
            server.port, f"AUTH {server.token}", f"STOP {tid}", f"SIGNAL {tid} KILL", "EXIT"
        )
        assert lines[2].startswith("ERR protected") and lines[3].startswith("ERR protected")
    assert server.process.poll() is None
    assert talk(server.port, "PING", "EXIT")[1] == "OK pong"

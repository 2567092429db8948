"""The measurements: each returns plain numbers, taken against a running BenchServer."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import psutil

from bench.server import BenchServer

TEXT_END, JSON_END = b"\r\n.\r\n", b"\r\n"


class Conn:
    """A blocking client that reads replies whole (text bodies up to '.', JSON lines)."""

    def __init__(self, server: BenchServer, mode: str = "json", auth: bool = True):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        self.buffer = b""
        self.read_until(b"\r\n")
        if auth:
            self.request(f"AUTH {server.token}")
        if mode == "json":
            self.request("MODE json")

    def read_until(self, end: bytes) -> bytes:
        while (index := self.buffer.find(end)) < 0:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buffer += chunk
        reply, self.buffer = self.buffer[: index + len(end)], self.buffer[index + len(end) :]
        return reply

    def request(self, line: str, end: bytes = JSON_END) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.read_until(end)

    def close(self) -> None:
        self.sock.close()


def timed(function, count: int) -> list[float]:
    """Seconds taken by each of `count` calls."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def sampled_at(reply: bytes) -> float:
    """The `sampled` time of a JSON LIST reply (read from its head, not the whole reply)."""
    return json.loads(reply[: reply.index(b',"processes"')] + b"}")["sampled"]


def ps_latencies(count: int) -> list[float]:
    """The C prototype's way: fork `ps -e -o pid,comm` for every request."""
    command = ["ps", "-e", "-o", "pid,comm"]
    return timed(lambda: subprocess.run(command, capture_output=True, check=True), count)


def rpmctl_latencies(server: BenchServer, count: int) -> list[float]:
    """`rpmctl ps` end to end: process start, connection, LIST, the table printed."""
    rpmctl = os.path.join(os.path.dirname(sys.executable), "rpmctl")
    command = [rpmctl, "-H", f"127.0.0.1:{server.port}", "ps"]
    return timed(lambda: subprocess.run(command, capture_output=True, check=True), count)


def list_latencies(server: BenchServer, mode: str, count: int) -> tuple[list[float], list[float]]:
    """LIST round trips, and (JSON mode) the age of the data when it arrived."""
    conn = Conn(server, mode)
    ages: list[float] = []

    def one() -> None:
        if mode == "json":
            ages.append(time.time() - sampled_at(conn.request("LIST")))
        else:
            conn.request("LIST", TEXT_END)

    one()  # wakes the sampler if it was idle
    ages.clear()
    samples = timed(one, count)
    conn.close()
    return samples, ages


def concurrent_lists(server: BenchServer, clients: int, each: int) -> dict:
    """`clients` connections at once, `each` LISTs apiece: latencies, failures, throughput."""
    latencies: list[float] = []
    failures = []
    barrier = threading.Barrier(clients + 1)

    def client() -> None:
        try:
            conn = Conn(server, "json")
            barrier.wait()
            latencies.extend(timed(lambda: conn.request("LIST"), each))
            conn.close()
        except Exception as err:  # a failure is a result here, not a crash
            failures.append(repr(err))
            barrier.abort()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return {"latencies": latencies, "failures": failures, "per_second": len(latencies) / wall}


class Drain:
    """Reads and discards everything arriving on a set of sockets, in one thread."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.running = True
        self.received = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def add(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            for key, _ in self.selector.select(timeout=0.1):
                with contextlib.suppress(BlockingIOError):
                    self.received += len(key.fileobj.recv(1 << 20))

    def stop(self) -> None:
        self.running = False
        self.thread.join()


def watchers(server: BenchServer, count: int, interval: float, delta: bool = False) -> list[Conn]:
    """`count` connections watching the table, their output drained by one thread."""
    conns = [Conn(server, "json") for _ in range(count)]
    for conn in conns:
        conn.sock.sendall(f"WATCH {interval}{' --delta' if delta else ''}\r\n".encode())
    return conns


def ping_under_load(server: BenchServer, seconds: float) -> list[float]:
    """PING round trips while 4 clients loop on LIST and a watcher refreshes every 0.2 s."""
    stop = threading.Event()

    def lister() -> None:
        conn = Conn(server, "json")
        while not stop.is_set():
            conn.request("LIST")
        conn.close()

    listers = [threading.Thread(target=lister) for _ in range(4)]
    drain = Drain()
    watching = watchers(server, 1, 0.2)
    for conn in watching:
        drain.add(conn.sock)
    drain.start()
    for thread in listers:
        thread.start()
    pinger = Conn(server, "json")
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.extend(timed(lambda: pinger.request("PING"), 1))
        time.sleep(0.01)
    stop.set()
    for thread in listers:
        thread.join()
    drain.stop()
    for conn in [*watching, pinger]:  # a watcher left open keeps the server sampling
        conn.close()
    return samples


def start_latencies(server: BenchServer, count: int) -> list[float]:
    conn = Conn(server, "json")
    samples = timed(lambda: conn.request("START /bin/true"), count)
    conn.close()
    return samples


def start_burst(server: BenchServer, count: int) -> float:
    """Seconds for `count` STARTs sent at once on one connection, until the last reply."""
    conn = Conn(server, "json")
    began = time.perf_counter()
    conn.sock.sendall(b"START /bin/true\n" * count)
    for _ in range(count):
        conn.read_until(JSON_END)
    elapsed = time.perf_counter() - began
    conn.close()
    return elapsed


def spawn_burst(count: int) -> float:
    """The floor for a burst: `count` bare posix_spawns, then waiting for them all."""
    began = time.perf_counter()
    pids = [os.posix_spawn("/bin/true", ["true"], os.environ) for _ in range(count)]
    for pid in pids:
        os.waitpid(pid, 0)
    return time.perf_counter() - began


def spawn_latencies(count: int) -> list[float]:
    """The floor: posix_spawn and waitpid of /bin/true in this process."""

    def spawn() -> None:
        os.waitpid(os.posix_spawn("/bin/true", ["true"], os.environ), 0)

    return timed(spawn, count)


def stop_latencies(server: BenchServer, count: int) -> list[float]:
    """STOP round trips of managed processes that obey SIGTERM."""
    conn = Conn(server, "json")
    samples = []
    for _ in range(count):
        pid = json.loads(conn.request("START sleep 60"))["pid"]
        samples.extend(timed(lambda pid=pid: conn.request(f"STOP {pid}"), 1))
    conn.close()
    return samples


LOG_TEST_BYTES = 256 * 1024 * 1024


def log_writer_cost(server: BenchServer) -> tuple[float, int]:
    """A program writes LOG_TEST_BYTES as fast as it can, through the server's log writer
    (which copies every program's output): the CPU seconds that cost the writer per MB, and
    the writer's unique memory (USS) in bytes."""
    conn = Conn(server, "json")
    ready = server.directory / "go"
    script = (
        f"while [ ! -e {ready} ]; do sleep 0.05; done; "
        f"head -c {LOG_TEST_BYTES} /dev/zero | tr '\\000' x; exec sleep 60"
    )
    pid = json.loads(conn.request(f"START sh -c {json.dumps(script)}"))["pid"]
    writer = next(
        child
        for child in server.psutil.children()
        if "--serve" in child.cmdline() and any("logwriter.py" in part for part in child.cmdline())
    )
    before = writer.cpu_times()
    ready.touch()  # and now it writes
    while psutil.Process(pid).name() != "sleep":  # the writing is over once sleep runs
        time.sleep(0.05)
    time.sleep(0.2)  # the pipe drained
    after, memory = writer.cpu_times(), writer.memory_full_info().uss
    conn.request(f"STOP {pid}")
    conn.close()
    spent = after.user + after.system - before.user - before.system
    return spent / (LOG_TEST_BYTES / 1e6), memory


def start_running(server: BenchServer, programs: int) -> list[int]:
    """Start `programs` managed programs that keep running (pipelined, 50 at a time)."""
    conn = Conn(server, "json")
    pids = []
    for start in range(0, programs, 50):
        batch = min(50, programs - start)
        conn.sock.sendall(b"START sleep 600\n" * batch)
        pids += [json.loads(conn.read_until(JSON_END))["pid"] for _ in range(batch)]
    conn.close()
    return pids


def idle_cpu(server: BenchServer, seconds: float, settle: float) -> float:
    """The server's CPU (cores) while no client asks anything, once `settle` seconds have
    passed (the sampler goes on for 10 s after the last LIST)."""
    time.sleep(settle)
    before = server.cpu_seconds()
    time.sleep(seconds)
    return (server.cpu_seconds() - before) / seconds


def stop_running(server: BenchServer, pids: list[int]) -> tuple[float, float]:
    """STOP them all (pipelined, 50 at a time): the seconds it took, and the server's CPU
    seconds meanwhile."""
    conn = Conn(server, "json")
    began, cpu = time.perf_counter(), server.cpu_seconds()
    for start in range(0, len(pids), 50):
        batch = pids[start : start + 50]
        conn.sock.sendall(b"".join(f"STOP {pid}\n".encode() for pid in batch))
        for _ in batch:
            conn.read_until(JSON_END)
    elapsed, spent = time.perf_counter() - began, server.cpu_seconds() - cpu
    conn.close()
    return elapsed, spent


def scrape_latencies(port: int, server: BenchServer, programs: int, count: int) -> list[float]:
    """/metrics scrapes with `programs` managed programs running (started pipelined)."""
    start_running(server, programs)
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> None:
        with urllib.request.urlopen(url, timeout=30) as reply:
            reply.read()

    scrape()
    return timed(scrape, count)


def memory_per_connection(server: BenchServer, count: int) -> float:
    """Bytes of server memory (USS) per idle connection, with `count` of them open."""
    time.sleep(0.5)
    before = server.memory()
    conns = [Conn(server, "text", auth=False) for _ in range(count)]
    time.sleep(1.0)
    after = server.memory()
    for conn in conns:
        conn.close()
    return (after - before) / count


def watcher_cpu(server: BenchServer, count: int, seconds: float, delta: bool = False):
    """Server CPU seconds per second with `count` watchers at 0.5 s, and the bytes per second
    they received (to see that they really were sent every table)."""
    drain = Drain()
    conns = watchers(server, count, 0.5, delta)
    for conn in conns:
        drain.add(conn.sock)
    drain.start()
    time.sleep(1.0)
    before, received = server.cpu_seconds(), drain.received
    time.sleep(seconds)
    used = server.cpu_seconds() - before
    rate = (drain.received - received) / seconds
    drain.stop()
    for conn in conns:
        conn.sock.close()
    return used / seconds, rate


def list_cpu(server: BenchServer, seconds: float) -> tuple[list[float], float]:
    """LIST latencies of one client looping for `seconds`, and the server's CPU meanwhile."""
    conn = Conn(server, "json")
    conn.request("LIST")
    before = server.cpu_seconds()
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.extend(timed(lambda: conn.request("LIST"), 1))
    used = server.cpu_seconds() - before
    conn.close()
    return samples, used / seconds

"""`make bench`: rpm measured against the ways it replaces, side by side in one run.

Creates N extra host processes (default 2,000 sleeps, removed afterwards), starts a real
server, and prints one table: each figure, its baseline, their ratio and the target.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import socket
import statistics

import psutil

from bench import fleet, measure, tui
from bench.hostprocs import HostProcesses
from bench.measure import percentile
from bench.server import BenchServer

RUNNING = 1000  # programs running for the figures of what many programs cost
ROW = "{:<44} {:>16} {:>20} {:>9} {:>11} {:>4}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.failed: list[str] = []

    def add(
        self,
        what: str,
        value: str,
        baseline: str = "",
        ratio: float | None = None,
        target: str = "",
        ok: bool | None = None,
    ) -> None:
        ratio_text = f"{ratio:.1f}x" if ratio is not None else ""
        verdict = "" if ok is None else ("yes" if ok else "NO")
        if ok is False:
            self.failed.append(what)
        self.rows.append((what, value, baseline, ratio_text, target, verdict))
        print(ROW.format(*self.rows[-1]), flush=True)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        models = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{models[0] if models else cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def list_figures(report: Report, server: BenchServer, quick: bool) -> None:
    """LIST against ps per request: one client, then 100 at once."""
    ps = measure.ps_latencies(20 if quick else 50)
    ps_p50, ps_rate = percentile(ps, 0.5), 1 / statistics.mean(ps)
    for mode in ("text", "json"):
        latencies, ages = measure.list_latencies(server, mode, 50 if quick else 200)
        p50 = percentile(latencies, 0.5)
        report.add(
            f"LIST {mode} p50, one client",
            ms(p50),
            f"{ms(ps_p50)} ps",
            ps_p50 / p50,
            ">= 10x",
            ps_p50 / p50 >= 10,
        )
        if ages:
            report.add(
                "  age of the data, max", f"{max(ages):.2f} s", target="<= 1 s", ok=max(ages) <= 1.0
            )
    rpmctl = percentile(measure.rpmctl_latencies(server, 10 if quick else 30), 0.5)
    report.add(
        "rpmctl ps p50, end to end",
        ms(rpmctl),
        f"{ms(ps_p50)} ps",
        rpmctl / ps_p50,
        "<= 300 ms",
        rpmctl <= 0.3,
    )
    load = measure.concurrent_lists(server, 100, 10)
    p99 = percentile(load["latencies"], 0.99) if load["latencies"] else float("inf")
    report.add(
        "100 clients x 10 LIST: failures",
        str(len(load["failures"])),
        target="0",
        ok=not load["failures"],
    )
    report.add("  p99", f"{p99:.2f} s", target="<= 2 s", ok=p99 <= 2)
    report.add(
        "  throughput",
        f"{load['per_second']:.0f}/s",
        f"{ps_rate:.0f}/s ps loop",
        load["per_second"] / ps_rate,
        ">= 10x",
        load["per_second"] >= 10 * ps_rate,
    )


def many_programs_figures(
    report: Report, server: BenchServer, starts: float, samples: int, quick: bool
) -> None:
    """With RUNNING programs running: a START against `starts` (none running), the idle
    server's CPU, then the STOP of them all."""
    running = measure.start_running(server, RUNNING)
    among = percentile(measure.start_latencies(server, samples), 0.5)
    report.add(
        f"  the same, {RUNNING:,} programs running",
        ms(among),
        f"{ms(starts)} none running",
        among / starts,
        "<= 1.5x",
        among <= 1.5 * starts,
    )
    idle = measure.idle_cpu(server, 3 if quick else 10, settle=11)
    report.add(f"server CPU, idle, {RUNNING:,} programs running", f"{idle:.3f} core")
    wall, cpu = measure.stop_running(server, running)
    report.add(f"STOP of {RUNNING:,} programs, pipelined", f"{wall:.2f} s", f"{cpu:.2f} s CPU")


def control_figures(report: Report, server: BenchServer, quick: bool) -> None:
    """PING under load, START against a bare spawn (and among many programs), STOP."""
    pings = percentile(measure.ping_under_load(server, 3 if quick else 8), 0.99)
    report.add(
        "PING p99, 4 LIST loops + a 0.2 s watcher", ms(pings), target="<= 50 ms", ok=pings <= 0.05
    )
    samples = 50 if quick else 200
    starts = percentile(measure.start_latencies(server, samples), 0.5)
    spawn = percentile(measure.spawn_latencies(samples), 0.5)
    report.add(
        "START /bin/true p50",
        ms(starts),
        f"{ms(spawn)} spawn+wait",
        starts / spawn,
        "<= 2x",
        starts <= 2 * spawn,
    )
    many_programs_figures(report, server, starts, samples, quick)
    burst = min(measure.start_burst(server, 50) for _ in range(3 if quick else 10))
    bare = min(measure.spawn_burst(50) for _ in range(3 if quick else 10))
    report.add(
        "50 STARTs pipelined, best run",
        ms(burst),
        f"{ms(bare)} 50 spawns",
        burst / bare,
        "<= 2.5x",
        burst <= 2.5 * bare,
    )
    stop = percentile(measure.stop_latencies(server, 30 if quick else 100), 0.5)
    report.add("STOP (obeys SIGTERM) p50", ms(stop), target="<= 50 ms", ok=stop <= 0.05)
    per_mb, memory = measure.log_writer_cost(server)
    report.add("log writer CPU per MB written", f"{per_mb * 1000:.2f} ms")
    report.add("  its memory (USS), for every program", f"{memory / 1e6:.1f} MB")


def resource_figures(report: Report, server: BenchServer, quick: bool) -> None:
    """Memory per idle connection; CPU of 50 watchers against one."""
    per = measure.memory_per_connection(server, 1000)
    report.add(
        "memory per idle connection (1,000 open)",
        f"{per / 1024:.1f} KB",
        target="<= 30 KB",
        ok=per <= 30 * 1024,
    )
    seconds = 4 if quick else 10
    for delta in (False, True):
        one, _ = measure.watcher_cpu(server, 1, seconds, delta)
        fifty, rate = measure.watcher_cpu(server, 50, seconds, delta)
        label = "--delta" if delta else "tables"
        report.add(
            f"CPU, 50 watchers vs 1 at 0.5 s ({label})",
            f"{fifty:.2f} core",
            f"{one:.2f} core",
            fifty / one,
            "<= 3x",
            fifty <= 3 * one,
        )
        report.add("  what the 50 watchers received", f"{rate / 2**20:.1f} MB/s")


def metrics_figures(report: Report, quick: bool) -> None:
    """A /metrics scrape with 1,000 managed programs running."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics = ("--metrics", f"tcp:{port}:interface=127.0.0.1", "--stop-children-on-exit")
    with BenchServer(*metrics) as server:
        samples = measure.scrape_latencies(port, server, 200 if quick else 1000, 20)
    p50 = percentile(samples, 0.5)
    report.add(
        f"/metrics scrape p50, {200 if quick else 1000} managed programs",
        ms(p50),
        target="<= 20 ms",
        ok=p50 <= 0.02,
    )


def tui_figures(report: Report) -> None:
    figures = tui.measure()
    snapshot = figures.pop("snapshot")
    report.add(
        "TUI: 5,000-row snapshot applied+drawn, p50",
        ms(percentile(snapshot, 0.5)),
        target="<= 50 ms",
        ok=percentile(snapshot, 0.5) <= 0.05,
    )
    report.add("  worst", ms(max(snapshot)))
    for key, samples in figures.items():
        report.add(
            f"TUI key {key}, p50 (worst)",
            f"{ms(percentile(samples, 0.5))}",
            f"({ms(max(samples))})",
            target="<= 20 ms",
            ok=percentile(samples, 0.5) <= 0.02,
        )
    for key, samples in tui.fleet_keys().items():
        report.add(
            f"TUI, 50 hosts x 2,000 rows, {key}, p50 (worst)",
            f"{ms(percentile(samples, 0.5))}",
            f"({ms(max(samples))})",
            target="<= 100 ms (250)",
            ok=percentile(samples, 0.5) <= 0.1 and max(samples) <= 0.25,
        )


def fleet_figures(report: Report, quick: bool) -> None:
    """The real rpm-tui idle-watching 50 real servers (each listing this host's processes)."""
    figures = fleet.tui_idle_cpu(50, 10.0 if quick else 30.0)
    report.add(
        "rpm-tui watching 50 servers (100,000 rows): CPU",
        f"{figures['tui_cores']:.3f} core",
        target="<= 0.15 core",
        ok=figures["tui_cores"] <= 0.15,
    )
    report.add("  what it read meanwhile", f"{figures['tui_read_per_second'] / 1024:.0f} KB/s")
    report.add("  its memory (RSS)", f"{figures['tui_memory'] / 2**20:.0f} MB")
    report.add("  the 50 servers' CPU meanwhile", f"{figures['servers_cores']:.2f} core")


def scaling(report: Report, hosts: HostProcesses, sizes: list[int], quick: bool) -> None:
    for size in sizes:
        hosts.resize(size)
        with BenchServer("--stop-children-on-exit") as server:
            total = len(psutil.pids())
            sampler, _ = measure.watcher_cpu(server, 1, 3 if quick else 8, delta=True)
            latencies, cpu = measure.list_cpu(server, 3 if quick else 8)
            report.add(f"scaling: {total} processes, LIST p50", ms(percentile(latencies, 0.5)))
            report.add("  sampler CPU (one 0.5 s --delta watcher)", f"{sampler:.2f} core")
            report.add("  server CPU while one client loops on LIST", f"{cpu:.2f} core")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--procs", type=int, default=2000, help="extra host processes")
    parser.add_argument(
        "--scaling",
        default="500,2000,8000",
        help="host process counts for the scaling rows ('' to skip)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter windows")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    report = Report()
    with HostProcesses(args.procs) as hosts:
        print(f"rpm benchmark on {machine()}")
        print(f"{len(psutil.pids())} processes on the host ({args.procs} extra sleeps)\n")
        print(ROW.format("measure", "rpm", "baseline", "ratio", "target", "ok"))
        with BenchServer("--stop-children-on-exit") as server:
            for figures in (list_figures, control_figures, resource_figures):
                figures(report, server, args.quick)
        metrics_figures(report, args.quick)
        tui_figures(report)
        fleet_figures(report, args.quick)
        sizes = [int(size) for size in args.scaling.split(",") if size]
        scaling(report, hosts, sizes, args.quick)
    if report.failed:
        print(f"\ntargets missed: {', '.join(report.failed)}")
    raise SystemExit(1 if report.failed else 0)


if __name__ == "__main__":
    main()

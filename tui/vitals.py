"""The header above the table, as htop shows a machine first: for one host its CPU bars (one
per core, or one for all when there are many), memory and swap bars, load, tasks and uptime;
for a fleet one line per host, the selected row's host highlighted (pure: urwid markup)."""

from __future__ import annotations

from rpm.hostinfo import duration, percent
from rpm.rows import human_bytes
from rpm.wire import escape_text

BAR = 20  # the width of a bar's inside
MANY_CPUS = 8  # past this, one bar for all of them


def bar(label: str, fraction: float, text: str) -> list:
    """`label[|||||      text]`, filled to the fraction."""
    filled = round(max(0.0, min(1.0, fraction)) * BAR)
    inside = ("|" * filled).ljust(BAR)
    inside = inside[: BAR - len(text)] + text if len(text) < BAR else inside
    return [("dim", f"{label}["), ("bar", inside[:filled]), inside[filled:], ("dim", "] ")]


def one_host(vitals: dict) -> list[list]:
    """Markup lines for a single host: CPU, memory and swap, then load, tasks and uptime."""
    cpus = vitals.get("cpu_percent_per_cpu") or []
    if 0 < len(cpus) <= MANY_CPUS:
        cpu_line = [
            part for n, busy in enumerate(cpus, 1) for part in bar(str(n), busy / 100, f"{busy}%")
        ]
    else:
        busy = vitals.get("cpu_percent", 0.0)
        cpu_line = bar("CPU", busy / 100, f"{busy:.1f}% of {vitals.get('cpus', '?')}")
    total, used = vitals.get("memory_total", 0), vitals.get("memory_used", 0)
    swap_total, swap_used = vitals.get("swap_total", 0), vitals.get("swap_used", 0)
    swap_text = f"{human_bytes(swap_used)}/{human_bytes(swap_total)}"
    memory_line = [
        *bar("Mem", used / total if total else 0, f"{human_bytes(used)}/{human_bytes(total)}"),
        *bar("Swp", swap_used / swap_total if swap_total else 0, swap_text),
    ]
    load = " ".join(f"{value:.2f}" for value in vitals.get("load", []))
    facts = (
        f"Load {load}  Tasks {vitals.get('processes', 0)}, {vitals.get('threads') or '?'} thr  "
        f"Managed {vitals.get('managed', 0)}  Uptime {duration(vitals.get('uptime', 0.0))}"
    )
    return [cpu_line, memory_line, [facts]]


def fleet_line(label: str, state: str, vitals: dict | None, selected: bool) -> list:
    """One host of a fleet: name, state, load, CPU, memory, processes, managed."""
    name = ("focus" if selected else "bold", f"{escape_text(label)[:20]:<20} ")
    shown = state
    state_part = ("notice" if state == "connected" else "error", f"{shown:<12} ")
    if vitals is None:
        return [name, state_part]
    load = (vitals.get("load") or [0.0])[0]
    memory = percent(vitals.get("memory_used", 0), vitals.get("memory_total", 0))
    return [
        name,
        state_part,
        f"load {load:5.2f}  cpu {vitals.get('cpu_percent', 0.0):5.1f}%  mem {memory:>6}  "
        f"procs {vitals.get('processes', 0):>6}  managed {vitals.get('managed', 0)}",
    ]


def header_lines(links, selected_host: str | None) -> list[list]:
    """The header's markup lines: one host in detail, or a line per host of a fleet."""
    links = list(links)
    if len(links) == 1:
        vitals = links[0].vitals
        return one_host(vitals) if vitals else []
    return [
        fleet_line(link.label, link.state, link.vitals, link.label == selected_host)
        for link in links
    ]

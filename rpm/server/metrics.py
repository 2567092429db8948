"""`--metrics ENDPOINT`: /metrics in the Prometheus text format, by the official
prometheus_client. Everything comes from what the server already holds (the sampler's
latest pass, kept fresh every few seconds while metrics are on, the supervisor's records
and counters), never from a scan per scrape."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.web.resource import Resource

KEEP_FRESH = 5.0  # seconds between the sampler's passes while metrics are served


class ProgramCpu:
    """Each program's CPU seconds, summed from the sampler's passes (its main process's CPU
    share over the time since the pass before), so a scrape reads no process."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self._last_seq, self._last_time = None, None

    def add(self, snapshot, label_of: Callable) -> None:
        if snapshot is None or snapshot.seq == self._last_seq:
            return
        if self._last_time is not None:
            elapsed = snapshot.taken_at - self._last_time
            for row in snapshot.rows:
                if row.managed and row.status != "restarting":
                    self.seconds[label_of(row)] += row.cpu / 100.0 * elapsed
        self._last_seq, self._last_time = snapshot.seq, snapshot.taken_at


class RpmCollector:
    """The metrics, built at each scrape from the server's state."""

    def __init__(self, core, connections: Callable[[], int]):
        self._core, self._connections = core, connections
        self._cpu = ProgramCpu()

    @staticmethod
    def _label(record) -> str:
        return record.name or str(record.pid)

    def collect(self):
        core = self._core
        snapshot, records = core.sampler.latest, core.supervisor.records()
        labels = {(r.pid, r.started): self._label(r) for r in records}
        self._cpu.add(snapshot, lambda row: labels.get(row.key, str(row.pid)))
        yield GaugeMetricFamily("rpm_up", "1 while the rpm server runs", value=1)
        running = core.supervisor.running()
        yield GaugeMetricFamily(
            "rpm_managed_programs", "managed programs running", value=len(running)
        )
        yield from self._programs(records, snapshot)
        yield from self._host(snapshot)
        yield GaugeMetricFamily("rpm_connections", "open connections", value=self._connections())
        requests = CounterMetricFamily(
            "rpm_requests", "requests answered", labels=["verb", "result"]
        )
        for (verb, result), count in sorted(core.requests.items()):
            requests.add_metric([verb, result], count)
        yield requests

    def _programs(self, records, snapshot):
        up = GaugeMetricFamily("rpm_program_up", "1 while the program runs", labels=["program"])
        restarts = CounterMetricFamily(
            "rpm_program_restarts", "restarts of the program", labels=["program"]
        )
        cpu = CounterMetricFamily(
            "rpm_program_cpu_seconds", "CPU seconds of the program", labels=["program"]
        )
        memory = GaugeMetricFamily(
            "rpm_program_resident_memory_bytes", "resident memory", labels=["program"]
        )
        rows = snapshot.by_pid if snapshot is not None else {}
        for record in records:
            label = [self._label(record)]
            running = record.pid is not None and not record.ended
            up.add_metric(label, 1 if running else 0)
            restarts.add_metric(label, record.restarts)
            cpu.add_metric(label, self._cpu.seconds.get(label[0], 0.0))
            row = rows.get(record.pid) if running else None
            memory.add_metric(label, row.rss if row is not None else 0)
        yield from (up, restarts, cpu, memory)

    @staticmethod
    def _host(snapshot):
        host = snapshot.host if snapshot is not None and snapshot.host else {}
        yield GaugeMetricFamily(
            "rpm_host_processes", "processes on the host", value=host.get("processes", 0)
        )
        yield GaugeMetricFamily(
            "rpm_host_load1", "1-minute load average", value=(host.get("load") or [0.0])[0]
        )


class MetricsResource(Resource):
    """GET /metrics: the registry in the Prometheus text format."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry):
        super().__init__()
        self._registry = registry

    def render_GET(self, request) -> bytes:
        if request.path.rstrip(b"/") != b"/metrics":
            request.setResponseCode(404)
            return b"rpm serves /metrics\n"
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self._registry)


def metrics_site(core, connections: Callable[[], int]):
    """The web site to serve on --metrics; the sampler keeps a pass at most KEEP_FRESH old."""
    from twisted.web.server import Site

    registry = CollectorRegistry(auto_describe=False)
    registry.register(RpmCollector(core, connections))
    core.sampler.watch(registry, KEEP_FRESH)
    return Site(MetricsResource(registry))

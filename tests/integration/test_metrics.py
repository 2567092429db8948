"""--metrics: a real server's /metrics, parsed with prometheus_client's own text parser."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_durability import Client
from tests.servers import BIN
from tests.support import wait_until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> dict:
    """(name, labels) -> value, for every sample."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_for_prometheus(server_runner):
    port = free_port()
    server = server_runner.run("--metrics", f"tcp:{port}:interface=127.0.0.1")
    client = Client(server)
    web = client("START --name web -- sh -c 'while :; do :; done'")["pid"]
    client("START sleep 300")
    client("STOP 999999")
    wait_until(lambda: scrape(port)[("rpm_program_cpu_seconds_total", (("program", "web"),))] > 0)
    samples = scrape(port)
    assert samples[("rpm_up", ())] == 1 and samples[("rpm_managed_programs", ())] == 2
    assert samples[("rpm_program_up", (("program", "web"),))] == 1
    assert samples[("rpm_program_restarts_total", (("program", "web"),))] == 0
    assert samples[("rpm_program_resident_memory_bytes", (("program", "web"),))] > 0
    assert samples[("rpm_host_processes", ())] > 1 and ("rpm_host_load1", ()) in samples
    assert samples[("rpm_connections", ())] >= 1
    requests = {key[1]: value for key, value in samples.items() if key[0] == "rpm_requests_total"}
    assert requests[(("result", "ok"), ("verb", "START"))] == 2
    assert requests[(("result", "no-such-process"), ("verb", "STOP"))] == 1
    client(f"STOP {web}")
    began = time.perf_counter()
    scrape(port)
    assert time.perf_counter() - began < 1.0


def test_metrics_on_a_reachable_address_need_tls_or_insecure(tmp_path):
    command = [str(BIN / "twistd"), "-n", "--pidfile=", "rpm", "--port", "0"]
    command += ["--state-dir", str(tmp_path / "state"), "--metrics", "tcp:9102"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "refusing plain TCP" in result.stderr


@pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="no Prometheus server here (Debian's prometheus package; .ci/run installs it)",
)
def test_a_real_prometheus_scrapes_rpm(server_runner, tmp_path):
    port, web = free_port(), free_port()
    server = server_runner.run("--metrics", f"tcp:{port}:interface=127.0.0.1")
    Client(server)("START --name scraped sleep 300")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: rpm\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{web}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        query = urllib.parse.urlencode({"query": 'rpm_program_up{program="scraped"}'})

        def answered():
            url = f"http://127.0.0.1:{web}/api/v1/query?{query}"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as reply:
                return json.load(reply)["data"]["result"]
            return None

        [result] = wait_until(answered, timeout=60)
        assert result["value"][1] == "1" and result["metric"]["job"] == "rpm"
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)

"""The testbed's services on the host, outside every cluster: the image registry, the cloud
DNS (BIND), Prometheus and the cluster exporter. Each is started, then waited for until it
answers."""

from __future__ import annotations

import hashlib
import sys
from functools import partial
from pathlib import Path

import httpx

from kubehop.testbed import builds, clouddns, images, layout, monitoring, procs
from kubehop.testbed.layout import ClusterLayout
from kubehop.testbed.readiness import Say, wait_ready
from kubehop.testbed.state import clouddns_pidfile, monitoring_pidfiles, registry_pidfile


def start_registry(say: Say) -> None:
    config = images.registry_config()
    procs.spawn(
        "registry",
        [str(builds.registry().binary("registry")), "serve", str(config)],
        run_dir=registry_pidfile().parent,
        log_dir=layout.state_dir() / "registry",
        env={"OTEL_TRACES_EXPORTER": "none"},
    )
    url = f"http://{layout.registry_address()}/v2/"
    wait_ready(
        "the local image registry",
        lambda: httpx.get(url, timeout=2).status_code == 200,
        timeout=30,
        log=layout.state_dir() / "registry" / "registry.log",
        pidfile=registry_pidfile(),
    )
    say(f"registry: listening on {layout.registry_address()}")


def start_clouddns(say: Say) -> None:
    conf = clouddns.write_config()
    procs.spawn("named", clouddns.argv(conf), run_dir=clouddns.run_dir(),
                log_dir=clouddns.dns_dir() / "logs")
    wait_ready("Cloud DNS (BIND)", partial(_dns_answers, clouddns.DEFAULT_ZONE), timeout=30,
               log=clouddns.dns_dir() / "logs" / "named.log", pidfile=clouddns_pidfile())
    say(f"cloud DNS: zone {clouddns.DEFAULT_ZONE} on {layout.HOST_ADDRESS}:53 (TSIG updates)")


def _dns_answers(zone: str) -> bool:
    import dns.message
    import dns.query
    import dns.rdatatype

    query = dns.message.make_query(zone, dns.rdatatype.SOA)
    reply = dns.query.udp(query, str(layout.HOST_ADDRESS), timeout=1)
    return len(reply.answer) > 0


def _exporter_version() -> str:
    """A hash of the exporter's code: a kubehop upgrade under a running testbed restarts it."""
    from kubehop.testbed import clusterexporter

    return hashlib.sha256(Path(clusterexporter.__file__).read_bytes()).hexdigest()[:12]


def _exporter_version_file() -> Path:
    return monitoring_pidfiles()[1].with_suffix(".version")


def start_clusterexporter(clusters: list[ClusterLayout]) -> None:
    run = monitoring_pidfiles()[1].parent
    procs.spawn("clusterexporter",
                [sys.executable, "-m", "kubehop.testbed.clusterexporter",
                 ",".join(c.name for c in clusters), str(layout.state_dir())],
                run_dir=run, log_dir=monitoring.monitoring_dir() / "logs")
    _exporter_version_file().write_text(_exporter_version())


def refresh_clusterexporter(clusters: list[ClusterLayout], say: Say) -> None:
    """Restart the exporter if its code is not the one this kubehop ships (it keeps no state;
    Prometheus misses a scrape at most)."""
    try:
        running = _exporter_version_file().read_text()
    except OSError:
        running = ""
    if running == _exporter_version():
        return
    procs.stop(monitoring_pidfiles()[1])
    start_clusterexporter(clusters)
    url = f"http://{layout.HOST_ADDRESS}:{monitoring.EXPORTER_PORT}/metrics"
    wait_ready("the cluster exporter", lambda: httpx.get(url, timeout=5).status_code == 200,
               timeout=30, log=monitoring.monitoring_dir() / "logs" / "clusterexporter.log",
               pidfile=monitoring_pidfiles()[1])
    say("monitoring: cluster exporter restarted with this kubehop's code")


def start_monitoring(clusters: list[ClusterLayout], say: Say) -> None:
    config = monitoring.write_prometheus_config(clusters)
    run = monitoring_pidfiles()[0].parent
    logs = monitoring.monitoring_dir() / "logs"
    procs.spawn("prometheus", monitoring.prometheus_argv(config), run_dir=run, log_dir=logs)
    start_clusterexporter(clusters)
    url = monitoring.prometheus_url()
    wait_ready("Prometheus", lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200,
               timeout=60, log=logs / "prometheus.log", pidfile=monitoring_pidfiles()[0])
    say(f"monitoring: Prometheus at {url}")

"""Monitoring of every testbed cluster: Prometheus (Debian's) on the host side.

It scrapes, per cluster and labelled ``cluster=<name>``:

- the kubelet's cAdvisor and resource metrics (per-pod CPU, memory, I/O; node usage),
- node capacity and allocatable, from :mod:`kubehop.testbed.clusterexporter` (kube-state-metrics,
  which would normally give them, is not served by the Go module proxy here),
- Traefik's metrics, and every pod annotated ``prometheus.io/scrape: "true"`` (the sample
  services), listed by the same exporter (Debian's Prometheus lacks Kubernetes discovery) and
  scraped on the pod address (the host routes each cluster's pod range to that cluster's node),
- the placement controller on the host (job ``kubehop-controller``, its default ``--listen``).

It loads kubehop's recording and alerting rules (``assets/prometheus/kubehop-rules.yml``, linked
from ``deploy/prometheus/`` in the repository), copied next to the configuration so the running
Prometheus does not depend on where kubehop is installed.

Prometheus and the exporter listen on the host's bridge address only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubehop.testbed import layout
from kubehop.testbed.images import asset
from kubehop.testbed.layout import ClusterLayout

PROMETHEUS_PORT = 9090
EXPORTER_PORT = 9101
SCRAPE_INTERVAL = "5s"
CONTROLLER_TARGET = "127.0.0.1:9180"
"""``kubehop controller run``'s default ``--listen``; the rules' alerts expect this job name."""
CONTROLLER_JOB = "kubehop-controller"
RULES_FILE = "kubehop-rules.yml"


def rules_source() -> Path:
    """The canonical rules file, shipped in the package (the repository's
    ``deploy/prometheus/kubehop-rules.yml`` is a link to it)."""
    return asset("prometheus", RULES_FILE)


def monitoring_dir() -> Path:
    return layout.state_dir() / "monitoring"


def prometheus_url() -> str:
    return f"http://{layout.HOST_ADDRESS}:{PROMETHEUS_PORT}"


def _tls(c: ClusterLayout) -> dict[str, str]:
    return {
        "ca_file": str(c.pki_dir / "ca.crt"),
        "cert_file": str(c.pki_dir / "prometheus.crt"),
        "key_file": str(c.pki_dir / "prometheus.key"),
    }


def _cluster_jobs(c: ClusterLayout) -> list[dict[str, Any]]:
    labels = {"cluster": c.name, "tier": layout.tier_of(c.name)}
    kubelet = f"{c.node_ip}:10250"
    node_relabel = [{"target_label": "node", "replacement": c.node_name}]
    return [
        {
            "job_name": f"{c.name}/cadvisor",
            "scheme": "https",
            "metrics_path": "/metrics/cadvisor",
            "tls_config": _tls(c),
            "static_configs": [{"targets": [kubelet], "labels": labels}],
            "relabel_configs": node_relabel,
        },
        {
            "job_name": f"{c.name}/kubelet-resource",
            "scheme": "https",
            "metrics_path": "/metrics/resource",
            "tls_config": _tls(c),
            "static_configs": [{"targets": [kubelet], "labels": labels}],
            "relabel_configs": node_relabel,
        },
        {
            "job_name": f"{c.name}/traefik",
            "static_configs": [{"targets": [f"{c.node_ip}:9000"], "labels": labels}],
        },
    ]


def write_prometheus_config(clusters: list[ClusterLayout]) -> Path:
    jobs: list[dict[str, Any]] = []
    for c in clusters:
        jobs += _cluster_jobs(c)
    exporter = f"{layout.HOST_ADDRESS}:{EXPORTER_PORT}"
    jobs.append({"job_name": "kubehop-nodes", "static_configs": [{"targets": [exporter]}]})
    jobs.append({
        "job_name": "pods",
        "http_sd_configs": [{"url": f"http://{exporter}/sd/pods", "refresh_interval": "5s"}],
    })
    jobs.append({"job_name": CONTROLLER_JOB, "static_configs": [{"targets": [CONTROLLER_TARGET]}]})
    path = monitoring_dir() / "prometheus.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    rules = path.parent / RULES_FILE
    rules.write_bytes(rules_source().read_bytes())
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(rules)],
        "scrape_configs": jobs,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def prometheus_argv(config: Path) -> list[str]:
    return [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={monitoring_dir() / 'data'}",
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address={layout.HOST_ADDRESS}:{PROMETHEUS_PORT}",
        "--log.level=warn",
    ]

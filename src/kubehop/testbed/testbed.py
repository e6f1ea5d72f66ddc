"""``kubehop testbed up|down|status``: the lifecycle of the whole multi-cluster testbed.

``up`` is idempotent: on a healthy testbed with the same clusters it changes nothing; on a broken
or half-made one it first cleans up, then builds anew. ``down`` removes everything ``up`` made
(processes, mounts, cgroups, namespaces, interfaces, iptables rules, state) and keeps the caches.

``up`` is here; the parts it puts together live in the modules below it (``state``, ``access``,
``clusterprocs``, ``services``, ``addons``, ``userfiles``, ``status``, ``teardown``), and this
module re-exports their public names, so ``from kubehop.testbed import testbed as tb`` remains
the one entry point of the CLI, the benchmarks and the tests.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from dataclasses import dataclass

from kubehop.errors import TestbedError
from kubehop.testbed import builds, clusterprocs, hostnet, images, layout
from kubehop.testbed import wan as testbed_wan
from kubehop.testbed.access import expected_allocatable, kube, node_resources
from kubehop.testbed.addons import (
    ensure_storage,
    install_samples_and_storage,
    push_sample_images,
    refresh_traefik,
    sample_images,
    storage_images,
    wait_addons,
)
from kubehop.testbed.clusterprocs import (
    CONTROL_PLANE,
    NODE_PROCESSES,
    refresh_kube_proxy,
    reshape_nodes,
)
from kubehop.testbed.layout import ClusterLayout
from kubehop.testbed.preflight import REQUIRED_COMMANDS, check_port_free, preflight
from kubehop.testbed.readiness import Say, quiet
from kubehop.testbed.services import (
    refresh_clusterexporter,
    start_clouddns,
    start_clusterexporter,
    start_monitoring,
    start_registry,
)
from kubehop.testbed.state import (
    clouddns_pidfile,
    inventory_file,
    kubeconfig_file,
    kubectl_binary,
    monitoring_pidfiles,
    recorded_clusters,
    registry_pidfile,
    run_dir,
    state_file,
)
from kubehop.testbed.status import ClusterStatus, Status, status
from kubehop.testbed.teardown import CONTAINER_LOG_LINKS, container_log_links, down, leftovers
from kubehop.testbed.userfiles import inventory, inventory_yaml, write_combined_kubeconfig

__all__ = [
    "CONTAINER_LOG_LINKS",
    "CONTROL_PLANE",
    "NODE_PROCESSES",
    "REQUIRED_COMMANDS",
    "ClusterStatus",
    "Say",
    "Status",
    "UpResult",
    "build_all",
    "check_port_free",
    "clouddns_pidfile",
    "container_log_links",
    "down",
    "ensure_storage",
    "expected_allocatable",
    "inventory",
    "inventory_file",
    "inventory_yaml",
    "kube",
    "kubeconfig_file",
    "kubectl_binary",
    "leftovers",
    "monitoring_pidfiles",
    "node_resources",
    "preflight",
    "recorded_clusters",
    "refresh_clusterexporter",
    "refresh_kube_proxy",
    "refresh_traefik",
    "registry_pidfile",
    "reshape_nodes",
    "run_dir",
    "sample_images",
    "start_clouddns",
    "start_clusterexporter",
    "start_monitoring",
    "start_registry",
    "state_file",
    "status",
    "storage_images",
    "up",
    "write_combined_kubeconfig",
]


def build_all(progress: builds.Progress | None) -> None:
    for comp in builds.all_components():
        builds.build(comp, progress=progress)


@dataclass
class UpResult:
    clusters: list[str]
    already_up: bool
    seconds: float
    kubeconfig: str


def up(
    names: tuple[str, ...], *, say: Say = quiet, progress: builds.Progress | None = None,
    wan: str | None = None,
) -> UpResult:
    """Bring the testbed up (or leave a healthy one as it is); ``wan`` names the WAN profile
    (default: the tiers' default on a new testbed, unchanged on a running one)."""
    start = time.monotonic()
    preflight()
    profile = testbed_wan.resolve(wan or "default", names)
    existing = recorded_clusters()
    if existing:
        if set(existing) != set(names):
            raise TestbedError(
                f"a testbed with clusters {','.join(existing)} is up; run 'kubehop testbed down' "
                f"before asking for {','.join(names)}"
            )
        report = status()
        # Storage is not part of this check: a testbed made before it gets it installed here.
        if report.running:
            reshape_nodes(layout.layouts(existing), say)
            refresh_clusterexporter(layout.layouts(existing), say)
            ensure_storage(layout.layouts(existing), say, progress)
            refresh_traefik(layout.layouts(existing), say)
            refresh_kube_proxy(layout.layouts(existing), say)
            if wan is not None:
                say("wan: " + testbed_wan.summary(testbed_wan.apply(profile, names)))
            # A newer kubehop may ship newer sample images than the running testbed has; each
            # is a registry check when it is there already.
            push_sample_images()
            inventory_file().write_text(inventory_yaml())  # names those images' tags
            say("testbed already up and healthy: nothing to do")
            return UpResult(list(existing), True, time.monotonic() - start, str(kubeconfig_file()))
        say("testbed is partly up: cleaning it before starting again")
        down(say=say)
    hostnet.check_addresses_free()
    check_port_free(layout.REGISTRY_PORT)

    build_all(progress)
    clusters = layout.layouts(names)
    layout.state_dir().mkdir(parents=True, exist_ok=True)
    # Traversable (not listable) so BIND, which drops root, reaches its own directory;
    # every secret inside is a 0600 file.
    layout.state_dir().chmod(0o711)
    state_file().write_text(
        json.dumps({"clusters": list(names), "created": dt.datetime.now(dt.UTC).isoformat()})
    )
    try:
        _up(clusters, say)
        say("wan: " + testbed_wan.summary(testbed_wan.apply(profile, names)))
    except BaseException:
        say(
            "bring-up failed: logs stay under "
            + str(layout.state_dir())
            + " until 'kubehop testbed down'"
        )
        raise
    return UpResult(list(names), False, time.monotonic() - start, str(kubeconfig_file()))


def _up(clusters: list[ClusterLayout], say: Say) -> None:
    """A new testbed, stage by stage; each stage across all clusters before the next one, so
    that the clusters start side by side."""
    _start_network(clusters, say)
    pause_ref, coredns_ref, traefik_ref = _start_registry_and_dns(say)
    clusterprocs.start_control_planes(clusters, say)
    write_combined_kubeconfig(clusters)
    inventory_file().write_text(inventory_yaml())
    clusterprocs.start_nodes(clusters, pause_ref=pause_ref, coredns_ref=coredns_ref,
                             traefik_ref=traefik_ref)
    start_monitoring(clusters, say)
    clusterprocs.wait_nodes_ready(clusters, say)
    install_samples_and_storage(clusters)
    wait_addons(clusters, say)


def _start_network(clusters: list[ClusterLayout], say: Say) -> None:
    """The host bridge and one network namespace per cluster on it."""
    # The kubelet's volume mounts must propagate to containerd and runc.
    subprocess.run(["mount", "--make-rshared", "/"], check=True)
    hostnet.ensure_inotify_limits()
    hostnet.ensure_bridge()
    for c in clusters:
        hostnet.ensure_cluster_netns(c)
    say(
        f"network: bridge {layout.BRIDGE} {layout.HOST_ADDRESS}, "
        + ", ".join(f"{c.name} {c.node_ip}" for c in clusters)
    )


def _start_registry_and_dns(say: Say) -> tuple[str, str, str]:
    """The registry, the images every cluster starts from pushed to it, then the cloud DNS;
    return the pause, CoreDNS and Traefik image references."""
    start_registry(say)
    pause_ref = images.build_and_push(images.pause_image())
    coredns_ref = images.build_and_push(images.coredns_image())
    traefik_ref = images.build_and_push(images.traefik_image())
    say("images: pause, coredns, traefik in the registry")
    start_clouddns(say)
    return pause_ref, coredns_ref, traefik_ref

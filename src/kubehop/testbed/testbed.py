"""``kubehop testbed up|down|status``: the lifecycle of the whole multi-cluster testbed.

``up`` is idempotent: on a healthy testbed with the same clusters it changes nothing; on a broken
or half-made one it first cleans up, then builds anew. ``down`` removes everything ``up`` made
(processes, mounts, cgroups, namespaces, interfaces, iptables rules, state) and keeps the caches.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import yaml
from lightkube.utils.quantity import parse_quantity

from kubehop.adapters import inventory as inv_file
from kubehop.adapters.kube import KubeCluster
from kubehop.domain.model import TRANSFER_ENTRYPOINT, ClusterInfo, DnsZoneInfo, Inventory
from kubehop.domain.mover import TRANSFER_PORT
from kubehop.errors import KubehopError, PreconditionError, TestbedError
from kubehop.testbed import (
    builds,
    cgroups,
    clouddns,
    components,
    hostnet,
    images,
    layout,
    monitoring,
    procs,
    storage,
)
from kubehop.testbed import wan as testbed_wan
from kubehop.testbed.layout import ClusterLayout
from kubehop.testbed.pki import KubeconfigEntry, kubeconfig_dict, write_kubeconfig
from kubehop.waiting import NotYet, WaitTimeoutError, wait_for

Say = Callable[[str], None]

NODE_PROCESSES = ("containerd", "kubelet", "kube-proxy")
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def _quiet(_: str) -> None:
    pass


def state_file() -> Path:
    return layout.state_dir() / "testbed.json"


def kubeconfig_file() -> Path:
    return layout.state_dir() / "kubeconfig"


def kubectl_binary() -> Path:
    return builds.kubernetes().binary("kubectl")


def recorded_clusters() -> tuple[str, ...]:
    """Clusters of the testbed as ``up`` recorded them; empty when there is none."""
    try:
        return tuple(json.loads(state_file().read_text())["clusters"])
    except (OSError, ValueError, KeyError):
        return ()


def run_dir(c: ClusterLayout) -> Path:
    return c.dir / "run"


# --- checks -------------------------------------------------------------------------------------

REQUIRED_COMMANDS = {
    "ip": "iproute2",
    "iptables": "iptables",
    "nsenter": "util-linux",
    "containerd": "containerd",
    "runc": "runc",
    "mmdebstrap": "mmdebstrap",
    "buildah": "buildah",
    "conntrack": "conntrack",
    "go": "golang (Go 1.25 or newer)",
}


def preflight() -> None:
    """Root, commands and kernel features, each failure a one-line reason and what to do."""
    if os.geteuid() != 0:
        raise PreconditionError(
            "kubehop testbed needs root (it creates network namespaces and "
            "runs kubelets); run it as root or with sudo"
        )
    for cmd, package in REQUIRED_COMMANDS.items():
        if shutil.which(cmd) is None:
            raise PreconditionError(
                f"the '{cmd}' command is missing; install {package} (make deps does it on Debian)"
            )
    if not Path("/usr/lib/cni/bridge").exists():
        raise PreconditionError(
            "CNI plugins are missing in /usr/lib/cni; install containernetworking-plugins"
        )
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        raise PreconditionError(
            "kernel feature br_netfilter is missing (no "
            "/proc/sys/net/bridge/bridge-nf-call-iptables); "
            "load it with 'modprobe br_netfilter'"
        )
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise PreconditionError(
            "kernel feature overlayfs is missing; load it with 'modprobe overlay'"
        )
    if not cgroups.hierarchies():
        raise PreconditionError("no cgroup hierarchy is mounted under /sys/fs/cgroup")


def _listening(port: int) -> list[str]:
    """Local addresses with a TCP socket listening on ``port`` (host network namespace)."""
    found = []
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state = fields[1], fields[3]
                addr_hex, port_hex = local.rsplit(":", 1)
                if state == "0A" and int(port_hex, 16) == port:
                    packed = bytes.fromhex(addr_hex)
                    if family == 4:
                        found.append(str(ipaddress.IPv4Address(packed[::-1])))
                    elif not any(packed):
                        found.append("::")
    return found


def check_port_free(port: int) -> None:
    """The registry binds the bridge address; fail before changing anything if that is taken."""
    # Compares, binds nothing: a listener on every address also takes the bridge's.
    wanted = {"0.0.0.0", str(layout.HOST_ADDRESS), "::"}  # noqa: S104
    taken = [a for a in _listening(port) if a in wanted]
    if taken:
        raise PreconditionError(
            f"port {port} on {layout.HOST_ADDRESS} is in use (a listener on {taken[0]}); stop "
            "what listens there, then run 'kubehop testbed up' again"
        )


# --- waiting ------------------------------------------------------------------------------------


def _wait(what: str, check: Callable[[], bool], *, timeout: float, log: Path | None,
          pidfile: Path | None = None) -> None:
    """Wait until ``check`` is true (an exception from it counts as not yet); fail at once if
    the process behind it has exited, and name its log either way."""

    def ready() -> bool:
        why = ""
        try:
            if check():
                return True
        except Exception as exc:
            why = str(exc)[:200]
        if pidfile is not None and procs.read_pid(pidfile) is None:
            last = _last_line(log) if log else ""
            raise TestbedError(f"{what} exited while starting ({last}); see its log: {log}")
        raise NotYet(why)

    try:
        wait_for(ready, timeout=timeout, interval=0.5, what=what)
    except WaitTimeoutError as exc:
        where = f"; see its log: {log}" if log else ""
        raise TestbedError(f"{what} did not become ready within {timeout:.0f}s{where}") from exc


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return "no log"
    lines = [line for line in lines if line]
    return lines[-1][-200:] if lines else "empty log"


def _kubeconfig_entry(c: ClusterLayout, identity: str) -> KubeconfigEntry:
    return KubeconfigEntry(
        context=c.name,
        server=c.api_url,
        ca_pem=(c.pki_dir / "ca.crt").read_bytes(),
        cert_pem=(c.pki_dir / f"{identity}.crt").read_bytes(),
        key_pem=(c.pki_dir / f"{identity}.key").read_bytes(),
    )


def kube(c: ClusterLayout, identity: str = "admin") -> KubeCluster:
    """The API of cluster ``c`` as ``identity`` (admin, or e.g. the read-only prometheus),
    reached from the host as a user reaches it. Built from the cluster's certificate files
    (no copies of its keys), not the combined kubeconfig: that one does not exist yet while the
    control planes start, and it holds the admin identity only."""
    files = {name: c.pki_dir / name for name in ("ca.crt", f"{identity}.crt", f"{identity}.key")}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise TestbedError(f"cluster {c.name} has no {missing[0]}; is the testbed up?")
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": c.name,
        "clusters": [{"name": c.name, "cluster": {
            "server": c.api_url, "certificate-authority": str(files["ca.crt"])}}],
        "users": [{"name": c.name, "user": {
            "client-certificate": str(files[f"{identity}.crt"]),
            "client-key": str(files[f"{identity}.key"])}}],
        "contexts": [{"name": c.name, "context": {"cluster": c.name, "user": c.name}}],
    }
    return KubeCluster(kubeconfig=config, context=c.name, name=c.name)


def _api_ready(c: ClusterLayout) -> bool:
    with kube(c) as k:
        return k.get_path("/readyz", timeout=5)[0] == 200


def _node_ready(c: ClusterLayout) -> bool:
    with kube(c) as k:
        return k.node_ready(c.node_name)


def _deployment_available(c: ClusterLayout, namespace: str, name: str) -> bool:
    with kube(c) as k:
        dep = k.get("Deployment", name, namespace)
    if dep is None:
        return False
    want = int(dep.get("spec", {}).get("replicas", 1))
    return int((dep.get("status") or {}).get("availableReplicas") or 0) >= want


def node_resources(c: ClusterLayout, key: str = "allocatable") -> tuple[int, int] | None:
    """The node's (millicores, bytes) of ``allocatable`` or ``capacity``; None before the
    kubelet has reported them."""
    with kube(c) as k:
        node = k.get("Node", c.node_name)
    values = ((node or {}).get("status") or {}).get(key) or {}
    if "cpu" not in values or "memory" not in values:
        return None
    cpu = parse_quantity(values["cpu"])
    memory = parse_quantity(values["memory"])
    if cpu is None or memory is None:
        return None
    return int(cpu * 1000), int(memory)


def expected_allocatable(c: ClusterLayout) -> tuple[int, int]:
    """What the node of ``c`` should offer its pods on this machine: its tier's shape."""
    cpu, memory = components.machine_capacity()
    shape = layout.allocatable(layout.tier_of(c.name), cpu_millis=cpu, memory=memory)
    return shape.cpu_millis, shape.memory


# --- up -----------------------------------------------------------------------------------------


def _spawn(c: ClusterLayout, name: str, argv: list[str]) -> None:
    procs.spawn(name, argv, run_dir=run_dir(c), log_dir=c.log_dir, netns=c.netns)


def registry_pidfile() -> Path:
    return layout.state_dir() / "registry" / "registry.pid"


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
    _wait(
        "the local image registry",
        lambda: httpx.get(url, timeout=2).status_code == 200,
        timeout=30,
        log=layout.state_dir() / "registry" / "registry.log",
        pidfile=registry_pidfile(),
    )
    say(f"registry: listening on {layout.registry_address()}")


def build_all(progress: builds.Progress | None) -> None:
    for comp in builds.all_components():
        builds.build(comp, progress=progress)


def _bootstrap_manifests(c: ClusterLayout, coredns_ref: str) -> str:
    text = images.asset("manifests", "bootstrap.yaml").read_text()
    return text.format(
        dns_ip=c.dns_service_ip, coredns_image=coredns_ref, cluster_domain=layout.CLUSTER_DOMAIN,
        dns_zone=clouddns.DEFAULT_ZONE, dns_server=layout.HOST_ADDRESS,
    )


@dataclass
class UpResult:
    clusters: list[str]
    already_up: bool
    seconds: float
    kubeconfig: str


def sample_images() -> tuple[images.ImageSpec, ...]:
    """The images of the sample services, the tests' HTTP server, the link prober and the
    volume data mover."""
    return (images.httpd_image(), images.orc8r_image(), images.agw_image(),
            images.linkprobe_image(), images.mover_image())


def up(
    names: tuple[str, ...], *, say: Say = _quiet, progress: builds.Progress | None = None,
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
            for spec in sample_images():
                images.build_and_push(spec)
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
    # The kubelet's volume mounts must propagate to containerd and runc.
    subprocess.run(["mount", "--make-rshared", "/"], check=True)
    hostnet.ensure_bridge()
    for c in clusters:
        hostnet.ensure_cluster_netns(c)
    say(
        f"network: bridge {layout.BRIDGE} {layout.HOST_ADDRESS}, "
        + ", ".join(f"{c.name} {c.node_ip}" for c in clusters)
    )

    start_registry(say)
    pause_ref = images.build_and_push(images.pause_image())
    coredns_ref = images.build_and_push(images.coredns_image())
    traefik_ref = images.build_and_push(images.traefik_image())
    say("images: pause, coredns, traefik in the registry")
    start_clouddns(say)

    for c in clusters:
        components.write_pki(c)
        _spawn(c, "etcd", components.etcd_argv(c))
        _spawn(c, "kube-apiserver", components.apiserver_argv(c))
    for c in clusters:
        _wait(f"kube-apiserver of {c.name}", partial(_api_ready, c), timeout=120,
              log=c.log_dir / "kube-apiserver.log")
        say(f"{c.name}: control plane answering at {c.api_url}")
    write_combined_kubeconfig(clusters)
    inventory_file().write_text(inventory_yaml())

    for c in clusters:
        _spawn(c, "kube-controller-manager", components.controller_manager_argv(c))
        _spawn(c, "kube-scheduler", components.scheduler_argv(c))
        cgroups.create_root(c.cgroup_root)
        _spawn(c, "containerd", components.containerd_argv(c, pause_ref))
    for c in clusters:
        _wait(f"containerd of {c.name}", c.containerd_socket.exists, timeout=30,
              log=c.log_dir / "containerd.log")
        _spawn(c, "kubelet", components.kubelet_argv(c))
        _spawn(c, "kube-proxy", components.kube_proxy_argv(c))
        _apply(c, _bootstrap_manifests(c, coredns_ref))
        _apply(c, _traefik_manifests(c, traefik_ref))
        # The host (Prometheus, tests) reaches pods the way a controller VM on the WAN would.
        hostnet.run("ip", "route", "replace", str(c.pod_cidr), "via", str(c.node_ip))
    start_monitoring(clusters, say)
    for c in clusters:
        _wait(f"node {c.node_name}", partial(_node_ready, c), timeout=120,
              log=c.log_dir / "kubelet.log")
        say(f"{c.name}: node {c.node_name} Ready")
    # The sample images are built while the nodes settle (the first time only).
    for spec in sample_images():
        images.build_and_push(spec)
    storage_refs = storage_images()  # the helper shares the sample images' Debian base
    for c in clusters:
        _apply(c, storage.manifests(c, *storage_refs))
    for c in clusters:
        _wait(f"CoreDNS of {c.name}", partial(_deployment_available, c, "kube-system", "coredns"),
              timeout=120, log=c.log_dir / "kubelet.log")
        _wait(f"Traefik of {c.name}", partial(_deployment_available, c, "traefik", "traefik"),
              timeout=120, log=c.log_dir / "kubelet.log")
        _wait_storage(c)
        say(f"{c.name}: cluster DNS at {c.dns_service_ip}, ingress at {c.node_ip}:80, "
            f"default StorageClass {storage.STORAGE_CLASS}")


def storage_images() -> tuple[str, str]:
    """The provisioner's and its helper's image references, built and pushed if missing (two
    registry checks when they are there)."""
    return (images.build_and_push(images.local_path_provisioner_image()),
            images.build_and_push(images.volume_helper_image()))


def _storage_ready(c: ClusterLayout) -> bool:
    """The provisioner runs and its class is the default one."""
    if not _deployment_available(c, storage.NAMESPACE, storage.DEPLOYMENT):
        return False
    with kube(c) as k:
        sc = k.get("StorageClass", storage.STORAGE_CLASS)
    annotations = ((sc or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(storage.DEFAULT_CLASS_ANNOTATION) == "true"


def _wait_storage(c: ClusterLayout) -> None:
    _wait(f"the storage provisioner of {c.name}", partial(_storage_ready, c), timeout=120,
          log=c.log_dir / "kubelet.log")


def ensure_storage(clusters: list[ClusterLayout], say: Say,
                   progress: builds.Progress | None = None) -> None:
    """Install or update the provisioner on a running testbed. Server-side apply of unchanged
    manifests changes nothing, so on a testbed that has it this costs a build-cache check, two
    registry checks and one apply per cluster."""
    missing = [c.name for c in clusters if not _check(partial(_storage_ready, c))]
    builds.build(builds.local_path_provisioner(), progress=progress)
    refs = storage_images()
    for c in clusters:
        _apply(c, storage.manifests(c, *refs))
    for c in clusters:
        _wait_storage(c)
    if missing:
        say(f"storage: local-path-provisioner installed in {', '.join(missing)}")


def _node_shaped(c: ClusterLayout, want: tuple[int, int]) -> bool:
    return node_resources(c) == want and _node_ready(c)


def reshape_nodes(clusters: list[ClusterLayout], say: Say) -> list[str]:
    """Restart the kubelets whose configuration is no longer what this kubehop writes (new
    tier shapes, another machine size) and wait until their nodes report the new allocatable;
    the others are left alone. The pods keep running through a kubelet restart."""
    changed = []
    for c in clusters:
        try:
            current = components.kubelet_config_path(c).read_text()
        except OSError:
            current = ""
        if current == components.kubelet_config_text(c):
            continue
        procs.stop(run_dir(c) / "kubelet.pid")
        _spawn(c, "kubelet", components.kubelet_argv(c))
        changed.append(c)
    for c in changed:
        want = expected_allocatable(c)
        _wait(f"node {c.node_name} to report its new allocatable",
              partial(_node_shaped, c, want),
              timeout=120, log=c.log_dir / "kubelet.log", pidfile=run_dir(c) / "kubelet.pid")
        say(f"{c.name}: kubelet restarted with its tier's shape "
            f"({want[0] / 1000:g} CPU, {want[1] / 2**30:.1f} GiB allocatable)")
    return [c.name for c in changed]


def refresh_traefik(clusters: list[ClusterLayout], say: Say) -> None:
    """Traefik as this kubehop configures it (a new entry point, say) on a running testbed:
    applying the same manifests changes nothing, changed ones roll Traefik out once."""
    ref = images.build_and_push(images.traefik_image())
    for c in clusters:
        with kube(c) as k:
            before = (k.get("Deployment", "traefik", "traefik") or {}).get("metadata", {}).get(
                "generation")
            k.apply_yaml(_traefik_manifests(c, ref))
            after = (k.get("Deployment", "traefik", "traefik") or {}).get("metadata", {}).get(
                "generation")
            if before != after:
                k.wait_rollout("Deployment", "traefik", "traefik", timeout=120)
                say(f"{c.name}: Traefik updated")


def refresh_kube_proxy(clusters: list[ClusterLayout], say: Say) -> None:
    """kube-proxy as this kubehop configures it on a running testbed: restarted only where its
    configuration file changed (it keeps no state; the rules it wrote stay while it starts)."""
    for c in clusters:
        config = c.dir / "kube-proxy" / "config.yaml"
        before = config.read_text() if config.exists() else ""
        argv = components.kube_proxy_argv(c)  # writes the file if it changed
        if config.read_text() != before:
            procs.stop(run_dir(c) / "kube-proxy.pid")
            _spawn(c, "kube-proxy", argv)
            say(f"{c.name}: kube-proxy restarted with its new configuration")


def _apply(c: ClusterLayout, manifests: str) -> None:
    with kube(c) as k:
        k.apply_yaml(manifests)


def _traefik_manifests(c: ClusterLayout, image: str) -> str:
    """Traefik's CRDs and ClusterRole of the built version, then our Deployment."""
    bin_dir = builds.traefik().bin_dir
    crds = (bin_dir / "kubernetes-crd-definition-v1.yml").read_text()
    rbac = [d for d in yaml.safe_load_all((bin_dir / "kubernetes-crd-rbac.yml").read_text())
            if d and d.get("kind") == "ClusterRole"]
    ours = images.asset("manifests", "traefik.yaml").read_text().format(
        traefik_image=image, node_ip=c.node_ip)
    return "\n---\n".join([crds, yaml.safe_dump_all(rbac), ours])


def clouddns_pidfile() -> Path:
    return clouddns.run_dir() / "named.pid"


def start_clouddns(say: Say) -> None:
    conf = clouddns.write_config()
    procs.spawn("named", clouddns.argv(conf), run_dir=clouddns.run_dir(),
                log_dir=clouddns.dns_dir() / "logs")
    _wait("Cloud DNS (BIND)", partial(_dns_answers, clouddns.DEFAULT_ZONE), timeout=30,
          log=clouddns.dns_dir() / "logs" / "named.log", pidfile=clouddns_pidfile())
    say(f"cloud DNS: zone {clouddns.DEFAULT_ZONE} on {layout.HOST_ADDRESS}:53 (TSIG updates)")


def _dns_answers(zone: str) -> bool:
    import dns.message
    import dns.query
    import dns.rdatatype

    query = dns.message.make_query(zone, dns.rdatatype.SOA)
    reply = dns.query.udp(query, str(layout.HOST_ADDRESS), timeout=1)
    return len(reply.answer) > 0


def monitoring_pidfiles() -> tuple[Path, Path]:
    run = monitoring.monitoring_dir() / "run"
    return run / "prometheus.pid", run / "clusterexporter.pid"


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
    _wait("the cluster exporter", lambda: httpx.get(url, timeout=5).status_code == 200,
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
    _wait("Prometheus", lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200,
          timeout=60, log=logs / "prometheus.log", pidfile=monitoring_pidfiles()[0])
    say(f"monitoring: Prometheus at {url}")


def write_combined_kubeconfig(clusters: list[ClusterLayout]) -> None:
    """One kubeconfig, one context per cluster named after it, admin credentials (mode 0600)."""
    entries = [_kubeconfig_entry(c, "admin") for c in clusters]
    write_kubeconfig(kubeconfig_file(), kubeconfig_dict(entries))


# --- status -------------------------------------------------------------------------------------


@dataclass
class ClusterStatus:
    name: str
    tier: str
    netns: str
    address: str
    api_server: str
    load_balancer: str
    processes: dict[str, bool] = field(default_factory=dict)
    api_ready: bool = False
    node_ready: bool = False
    ingress_ready: bool = False
    storage_ready: bool = False
    """The dynamic provisioner runs and ``local-path`` is the default StorageClass."""
    cpu_allocatable: float | None = None
    """Cores the node offers its pods (its tier's shape), None if the API did not say."""
    memory_allocatable: int | None = None
    """Bytes the node offers its pods."""

    @property
    def running(self) -> bool:
        """The cluster itself works (what ``up`` keeps rather than rebuilds)."""
        return (self.api_ready and self.node_ready and self.ingress_ready
                and all(self.processes.values()))

    @property
    def healthy(self) -> bool:
        return self.running and self.storage_ready


@dataclass
class Status:
    up: bool
    clusters: list[ClusterStatus]
    registry: str
    kubeconfig: str
    versions: dict[str, str]
    services: dict[str, bool] = field(default_factory=dict)
    dns_zone: str = clouddns.DEFAULT_ZONE
    dns_server: str = f"{layout.HOST_ADDRESS}:{clouddns.DNS_PORT}"
    tsig_key_file: str = ""
    prometheus: str = monitoring.prometheus_url()

    @property
    def running(self) -> bool:
        """Up, every host service and every cluster running, add-ons (storage) aside."""
        return self.up and all(self.services.values()) and all(c.running for c in self.clusters)

    @property
    def healthy(self) -> bool:
        return self.running and all(c.healthy for c in self.clusters)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["healthy"] = self.healthy
        for c, d in zip(self.clusters, data["clusters"], strict=True):
            d["healthy"] = c.healthy
        return data


def _check(fn: Callable[[], bool]) -> bool:
    try:
        return fn()
    except Exception:
        return False


def status() -> Status:
    names = recorded_clusters()
    clusters = []
    for c in layout.layouts(names):
        st = ClusterStatus(
            name=c.name,
            tier=layout.tier_of(c.name),
            netns=c.netns,
            address=str(c.node_ip),
            api_server=c.api_url,
            load_balancer=str(c.node_ip),
        )
        for name in (*CONTROL_PLANE, *NODE_PROCESSES):
            st.processes[name] = procs.read_pid(run_dir(c) / f"{name}.pid") is not None
        st.api_ready = _check(partial(_api_ready, c))
        st.node_ready = st.api_ready and _check(partial(_node_ready, c))
        st.ingress_ready = st.api_ready and _check(
            partial(_deployment_available, c, "traefik", "traefik"))
        st.storage_ready = st.api_ready and _check(partial(_storage_ready, c))
        if st.api_ready:
            with contextlib.suppress(KubehopError):
                alloc = node_resources(c)
                if alloc is not None:
                    st.cpu_allocatable, st.memory_allocatable = alloc[0] / 1000, alloc[1]
        clusters.append(st)
    return Status(
        up=bool(names),
        clusters=clusters,
        registry=layout.registry_address(),
        services={
            "registry": procs.read_pid(registry_pidfile()) is not None,
            "clouddns": procs.read_pid(clouddns_pidfile()) is not None,
            "prometheus": procs.read_pid(monitoring_pidfiles()[0]) is not None,
            "clusterexporter": procs.read_pid(monitoring_pidfiles()[1]) is not None,
            **testbed_wan.services(),
        } if names else {},
        tsig_key_file=str(clouddns.key_file()) if names else "",
        kubeconfig=str(kubeconfig_file()) if names else "",
        versions={
            "kubernetes": layout.KUBERNETES_VERSION,
            "etcd": layout.ETCD_VERSION,
            "coredns": layout.COREDNS_VERSION,
            "registry": layout.REGISTRY_VERSION,
            "local-path-provisioner": layout.LOCAL_PATH_PROVISIONER_VERSION,
        },
    )


# --- down ---------------------------------------------------------------------------------------


def _mounts_under(base: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].replace("\\040", " ")
        if mount_point == str(base) or mount_point.startswith(str(base) + "/"):
            found.append(mount_point)
    return found


def _unmount_all(base: Path) -> None:
    for _ in range(5):
        mounts = _mounts_under(base)
        if not mounts:
            return
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True, check=False)


CONTAINER_LOG_LINKS = Path("/var/log/containers")


def container_log_links() -> list[Path]:
    """The kubelets' links in the machine-wide /var/log/containers to our pod logs (each
    cluster's pod log directory is its own, but this legacy directory of links is not)."""
    prefix = str(layout.state_dir()) + "/"
    found = []
    with contextlib.suppress(OSError):
        for link in CONTAINER_LOG_LINKS.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and str(link.readlink()).startswith(prefix):
                    found.append(link)
    return found


def _down_cluster(c: ClusterLayout, say: Say) -> None:
    for name in ("kubelet", "kube-proxy"):
        procs.stop(run_dir(c) / f"{name}.pid")
    # Containers (in the kubelet's cgroup subtree), then their shims, then containerd.
    procs.stop_pids(cgroups.pids_under(c.cgroup_root), timeout=5)
    procs.stop_pids(list(procs.pids_matching(str(c.dir / "containerd"))), timeout=5)
    for name in (
        "containerd",
        "kube-scheduler",
        "kube-controller-manager",
        "kube-apiserver",
        "etcd",
    ):
        procs.stop(run_dir(c) / f"{name}.pid")
    procs.stop_pids(procs.pids_in_netns(c.netns), timeout=5)
    _unmount_all(c.dir)
    stuck = cgroups.remove_root(c.cgroup_root)
    if stuck:
        say(f"{c.name}: cgroups still busy: {', '.join(stuck[:3])}")
    hostnet.delete_cluster_netns(c)
    say(f"{c.name}: stopped and removed")


def down(*, say: Say = _quiet) -> list[str]:
    """Remove everything ``up`` made; return what could not be removed (empty when clean)."""
    if os.geteuid() != 0:
        raise PreconditionError("kubehop testbed down needs root; run it as root or with sudo")
    names = list(recorded_clusters())
    # Also sweep namespaces and cgroups of clusters a crashed run did not record.
    for ns in hostnet.leftover_netns():
        if ns.removeprefix(layout.NETNS_PREFIX) not in names:
            names.append(ns.removeprefix(layout.NETNS_PREFIX))
    for root in cgroups.leftover_roots():
        if root.removeprefix(layout.CGROUP_PREFIX) not in names:
            names.append(root.removeprefix(layout.CGROUP_PREFIX))
    for c in layout.layouts(tuple(names)):
        _down_cluster(c, say)
    for pidfile in (registry_pidfile(), clouddns_pidfile(), *monitoring_pidfiles()):
        procs.stop(pidfile)
    # Whatever else still runs from the state directory (a crashed run, a renamed component).
    procs.stop_pids(list(procs.pids_matching(str(layout.state_dir()))), timeout=5)
    testbed_wan.clear(tuple(names))
    hostnet.delete_bridge()
    for link in container_log_links():
        link.unlink(missing_ok=True)
    base = layout.state_dir()
    _unmount_all(base)
    if base.exists() and not _mounts_under(base):
        shutil.rmtree(base)
    left = leftovers()
    if not left:
        say("testbed down: nothing left behind (caches kept in " + str(layout.cache_dir()) + ")")
    return left


def leftovers() -> list[str]:
    """Anything of a testbed still on the machine: the check behind ``down``'s promise."""
    found: list[str] = []
    found += [f"netns {n}" for n in hostnet.leftover_netns()]
    found += [f"interface {n}" for n in hostnet.leftover_links()]
    found += [f"iptables rule {r}" for r in hostnet.iptables_rules()]
    found += testbed_wan.leftovers()
    found += [f"cgroup {r}" for r in cgroups.leftover_roots()]
    found += [f"mount {m}" for m in _mounts_under(layout.state_dir())]
    found += [f"process {p}" for p in procs.pids_matching(str(layout.state_dir()))]
    found += [f"log link {p}" for p in container_log_links()]
    if layout.state_dir().exists():
        found.append(f"directory {layout.state_dir()}")
    return found


def inventory() -> Inventory:
    """The testbed's clusters as kubehop's inventory: contexts, tiers, load balancers, the
    private zone with its TSIG key file."""
    return Inventory(
        kubeconfig=str(kubeconfig_file()),
        clusters={
            c.name: ClusterInfo(name=c.name, context=c.name, tier=layout.tier_of(c.name),
                                load_balancer=str(c.node_ip),
                                entrypoints={80: "web", TRANSFER_PORT: TRANSFER_ENTRYPOINT},
                                cluster_domain=layout.CLUSTER_DOMAIN,
                                proxy_rules=(("ip", "netns", "exec", c.netns, "iptables-save",
                                              "-t", "nat"),))
            for c in layout.layouts(recorded_clusters())
        },
        dns=DnsZoneInfo(zone=clouddns.DEFAULT_ZONE, server=str(layout.HOST_ADDRESS),
                        port=clouddns.DNS_PORT, key_file=str(clouddns.key_file())),
        prometheus=monitoring.prometheus_url(),
        probe_image=images.linkprobe_image().ref(),
        mover_image=images.mover_image().ref(),
    )


def inventory_file() -> Path:
    return layout.state_dir() / "inventory.yaml"


def inventory_yaml() -> str:
    return inv_file.dump(inventory())

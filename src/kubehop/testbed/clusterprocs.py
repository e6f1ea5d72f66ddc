"""Each cluster's own processes, in its network namespace: the control plane (etcd and the
Kubernetes servers) and the node (containerd, kubelet, kube-proxy). Started by ``up`` in
stages across all clusters, so that the clusters start side by side; restarted on a running
testbed where this kubehop writes another configuration."""

from __future__ import annotations

from functools import partial

from kubehop.testbed import addons, cgroups, components, hostnet, procs
from kubehop.testbed.access import api_ready, expected_allocatable, node_ready, node_shaped
from kubehop.testbed.layout import ClusterLayout
from kubehop.testbed.readiness import Say, wait_ready
from kubehop.testbed.state import run_dir

NODE_PROCESSES = ("containerd", "kubelet", "kube-proxy")
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def spawn(c: ClusterLayout, name: str, argv: list[str]) -> None:
    procs.spawn(name, argv, run_dir=run_dir(c), log_dir=c.log_dir, netns=c.netns)


def start_control_planes(clusters: list[ClusterLayout], say: Say) -> None:
    """Certificates, etcd and the API server of every cluster, until each API answers."""
    for c in clusters:
        components.write_pki(c)
        spawn(c, "etcd", components.etcd_argv(c))
        spawn(c, "kube-apiserver", components.apiserver_argv(c))
    for c in clusters:
        wait_ready(f"kube-apiserver of {c.name}", partial(api_ready, c), timeout=120,
                   log=c.log_dir / "kube-apiserver.log")
        say(f"{c.name}: control plane answering at {c.api_url}")


def start_nodes(clusters: list[ClusterLayout], *, pause_ref: str, coredns_ref: str,
                traefik_ref: str) -> None:
    """The rest of the control plane, then each node, its cluster's DNS and ingress manifests,
    and the host's route to its pods (not waited for here)."""
    for c in clusters:
        spawn(c, "kube-controller-manager", components.controller_manager_argv(c))
        spawn(c, "kube-scheduler", components.scheduler_argv(c))
        cgroups.create_root(c.cgroup_root)
        spawn(c, "containerd", components.containerd_argv(c, pause_ref))
    for c in clusters:
        wait_ready(f"containerd of {c.name}", c.containerd_socket.exists, timeout=30,
                   log=c.log_dir / "containerd.log")
        spawn(c, "kubelet", components.kubelet_argv(c))
        spawn(c, "kube-proxy", components.kube_proxy_argv(c))
        addons.apply(c, addons.bootstrap_manifests(c, coredns_ref))
        addons.apply(c, addons.traefik_manifests(c, traefik_ref))
        # The host (Prometheus, tests) reaches pods the way a controller VM on the WAN would.
        hostnet.run("ip", "route", "replace", str(c.pod_cidr), "via", str(c.node_ip))


def wait_nodes_ready(clusters: list[ClusterLayout], say: Say) -> None:
    for c in clusters:
        wait_ready(f"node {c.node_name}", partial(node_ready, c), timeout=120,
                   log=c.log_dir / "kubelet.log")
        say(f"{c.name}: node {c.node_name} Ready")


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
        spawn(c, "kubelet", components.kubelet_argv(c))
        changed.append(c)
    for c in changed:
        want = expected_allocatable(c)
        wait_ready(f"node {c.node_name} to report its new allocatable",
                   partial(node_shaped, c, want),
                   timeout=120, log=c.log_dir / "kubelet.log", pidfile=run_dir(c) / "kubelet.pid")
        say(f"{c.name}: kubelet restarted with its tier's shape "
            f"({want[0] / 1000:g} CPU, {want[1] / 2**30:.1f} GiB allocatable)")
    return [c.name for c in changed]


def refresh_kube_proxy(clusters: list[ClusterLayout], say: Say) -> None:
    """kube-proxy as this kubehop configures it on a running testbed: restarted only where its
    configuration file changed (it keeps no state; the rules it wrote stay while it starts)."""
    for c in clusters:
        config = c.dir / "kube-proxy" / "config.yaml"
        before = config.read_text() if config.exists() else ""
        argv = components.kube_proxy_argv(c)  # writes the file if it changed
        if config.read_text() != before:
            procs.stop(run_dir(c) / "kube-proxy.pid")
            spawn(c, "kube-proxy", argv)
            say(f"{c.name}: kube-proxy restarted with its new configuration")

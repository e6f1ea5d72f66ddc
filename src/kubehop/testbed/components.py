"""Configuration and command lines of every process of one testbed cluster.

One place that says how each upstream component is run, so a reader can compare it with a
production cluster. Files are written under the cluster's state directory; nothing here starts
a process (see :mod:`kubehop.testbed.cluster`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from kubehop.files import private_dir
from kubehop.testbed import builds, layout
from kubehop.testbed.layout import API_PORT, CLUSTER_DOMAIN, ClusterLayout
from kubehop.testbed.pki import ClientIdentity, ClusterPKI, write_kubeconfig

# Every listener of a cluster's network namespace binds the one address its clients use: the
# node address for what the host, the other clusters or pods call (API server, kubelet,
# Traefik), the loopback for the rest. The namespace is shared with hostNetwork pods, so the
# loopback is not private: etcd also demands a client certificate of its own CA.
ETCD_CLIENT_URL = "https://127.0.0.1:2379"
ETCD_PEER_URL = "https://127.0.0.1:2380"


def client_identities(c: ClusterLayout) -> list[ClientIdentity]:
    return [
        ClientIdentity("admin", "kubehop-admin", ("system:masters",)),
        ClientIdentity(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            ("kubehop:apiserver-kubelet",),
        ),
        ClientIdentity("controller-manager", "system:kube-controller-manager"),
        ClientIdentity("scheduler", "system:kube-scheduler"),
        ClientIdentity("kubelet", f"system:node:{c.node_name}", ("system:nodes",)),
        ClientIdentity("kube-proxy", "system:kube-proxy"),
        ClientIdentity("prometheus", "kubehop-prometheus"),
    ]


def kubeconfig_path(c: ClusterLayout, stem: str) -> Path:
    return c.dir / "kubeconfigs" / f"{stem}.kubeconfig"


def write_pki(c: ClusterLayout) -> ClusterPKI:
    """Certificates and one kubeconfig per client identity, all for the API server at the node
    address (the only address it listens on), in owner-only files and directories."""
    pki = ClusterPKI(c)
    idents = client_identities(c)
    pki.create_all(idents)
    private_dir(kubeconfig_path(c, "admin").parent)
    for ident in idents:
        write_kubeconfig(kubeconfig_path(c, ident.stem), pki.kubeconfig(ident.stem, context=c.name))
    return pki


def etcd_argv(c: ClusterLayout) -> list[str]:
    """TLS on the loopback, and only clients with a certificate of the etcd CA (the API
    server's) get in; the peer listener likewise. No separate plain-HTTP metrics listener:
    metrics stay behind the client port's authentication."""
    data = c.dir / "etcd"
    pki = c.pki_dir
    return [
        str(builds.etcd().binary("etcd")),
        f"--name={c.name}",
        f"--data-dir={data}",
        f"--listen-client-urls={ETCD_CLIENT_URL}",
        f"--advertise-client-urls={ETCD_CLIENT_URL}",
        f"--listen-peer-urls={ETCD_PEER_URL}",
        f"--initial-advertise-peer-urls={ETCD_PEER_URL}",
        f"--initial-cluster={c.name}={ETCD_PEER_URL}",
        f"--cert-file={pki / 'etcd-server.crt'}",
        f"--key-file={pki / 'etcd-server.key'}",
        f"--trusted-ca-file={pki / 'etcd-ca.crt'}",
        "--client-cert-auth",
        f"--peer-cert-file={pki / 'etcd-server.crt'}",
        f"--peer-key-file={pki / 'etcd-server.key'}",
        f"--peer-trusted-ca-file={pki / 'etcd-ca.crt'}",
        "--peer-client-cert-auth",
        "--log-level=warn",
        # A disposable test cluster: trading durability for far less disk I/O is right here.
        "--unsafe-no-fsync",
        "--snapshot-count=10000",
    ]


def apiserver_argv(c: ClusterLayout) -> list[str]:
    pki = c.pki_dir
    return [
        str(builds.kubernetes().binary("kube-apiserver")),
        f"--advertise-address={c.node_ip}",
        f"--bind-address={c.node_ip}",
        f"--secure-port={API_PORT}",
        f"--etcd-servers={ETCD_CLIENT_URL}",
        f"--etcd-cafile={pki / 'etcd-ca.crt'}",
        f"--etcd-certfile={pki / 'apiserver-etcd-client.crt'}",
        f"--etcd-keyfile={pki / 'apiserver-etcd-client.key'}",
        f"--service-cluster-ip-range={c.service_cidr}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--service-account-key-file={pki / 'service-account.pub'}",
        f"--service-account-signing-key-file={pki / 'service-account.key'}",
        f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        "--profiling=false",
        "--service-node-port-range=30000-32767",
        "--v=1",
    ]


def controller_manager_argv(c: ClusterLayout) -> list[str]:
    kc = kubeconfig_path(c, "controller-manager")
    pki = c.pki_dir
    return [
        str(builds.kubernetes().binary("kube-controller-manager")),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--cluster-name={c.name}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--service-account-private-key-file={pki / 'service-account.key'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        "--use-service-account-credentials=true",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def scheduler_argv(c: ClusterLayout) -> list[str]:
    kc = kubeconfig_path(c, "scheduler")
    return [
        str(builds.kubernetes().binary("kube-scheduler")),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def containerd_config(c: ClusterLayout, sandbox_image: str) -> Path:
    """One containerd per cluster: its own root, state, socket, CNI and registry config.

    A shared containerd would let each kubelet garbage-collect the other clusters' pods.
    """
    base = c.dir / "containerd"
    _write_registry_hosts(base)
    cni_conf = _write_cni_config(c)
    return _write_containerd_toml(c, base, cni_conf, sandbox_image)


def _write_registry_hosts(base: Path) -> None:
    """Pull from the testbed's registry over plain HTTP (it listens on the host bridge only)."""
    certs = base / "certs.d" / layout.registry_address()
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "hosts.toml").write_text(
        f'server = "http://{layout.registry_address()}"\n\n'
        f'[host."http://{layout.registry_address()}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )


def _write_cni_config(c: ClusterLayout) -> Path:
    """The pod network of the cluster's node: a bridge with host-local addresses from its pod
    CIDR; returns the CNI configuration directory."""
    cni_conf = c.dir / "cni" / "net.d"
    cni_conf.mkdir(parents=True, exist_ok=True)
    (cni_conf / "10-kubehop.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": "kubehop",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": "cni0",
                        "isGateway": True,
                        "ipMasq": True,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": str(c.node_pod_cidr)}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": str(c.dir / "cni" / "ipam"),
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            },
            indent=2,
        )
    )
    return cni_conf


def _write_containerd_toml(c: ClusterLayout, base: Path, cni_conf: Path,
                           sandbox_image: str) -> Path:
    """containerd's own configuration file, every path under ``base``."""
    config = base / "config.toml"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    config.write_text(f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{c.containerd_socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"

[{cri}]
  sandbox_image = "{sandbox_image}"
  netns_mounts_under_state_dir = true
  # These machines withhold CAP_SYS_RESOURCE, so no process may lower its OOM score; the
  # kubelet asks for -998 on every pod sandbox. Clamp to containerd's own score instead.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{base / "runc"}"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
  [{cri}.registry]
    config_path = "{base / "certs.d"}"
""")
    return config


def containerd_argv(c: ClusterLayout, sandbox_image: str) -> list[str]:
    return ["containerd", "--config", str(containerd_config(c, sandbox_image))]


def machine_capacity() -> tuple[int, int]:
    """(CPU in millicores, memory in bytes) as every kubelet here reports its capacity: the
    whole machine's processors and MemTotal."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
            break
    else:  # pragma: no cover - every Linux has it
        raise OSError("no MemTotal in /proc/meminfo")
    return (os.cpu_count() or 1) * 1000, memory


def kubelet_config_text(c: ClusterLayout, capacity: tuple[int, int] | None = None) -> str:
    """The kubelet's configuration; ``capacity`` (millicores, bytes) is the machine's unless
    given, and sets the reservation that gives the node its tier's shape."""
    pki = c.pki_dir
    cpu, memory = capacity or machine_capacity()
    reserved = layout.reservation(layout.tier_of(c.name), cpu_millis=cpu, memory=memory)
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": str(c.node_ip),
        "port": 10250,
        "readOnlyPort": 0,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": c.cgroup_root,
        "cgroupsPerQOS": True,
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{c.containerd_socket}",
        "clusterDNS": [str(c.dns_service_ip)],
        "clusterDomain": CLUSTER_DOMAIN,
        # No upstream resolvers: pods resolve cluster names only and call nothing outside.
        "resolvConf": "",
        # Its own pod log directory: each kubelet's garbage collection deletes the directories
        # of pods it does not know, so a shared /var/log/pods loses the other clusters' logs.
        "podLogsDir": str(c.pod_logs_dir),
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        # The testbed shares one disk with everything else on the machine: keep images (the
        # sandbox image above all) and never evict for disk pressure caused by others.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # The tier's shape (layout.TIER_SHAPES) out of the whole machine every kubelet sees.
        # Enforced on the pods only (their cgroup is capped at allocatable), as by default:
        # nothing else runs in a cgroup the kubelet could cap.
        "systemReserved": {"cpu": f"{reserved.cpu_millis}m", "memory": str(reserved.memory)},
        "enforceNodeAllocatable": ["pods"],
        "evictionHard": {
            "memory.available": f"{layout.EVICTION_MEMORY // layout.MIB}Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "maxPods": 110,
        "nodeStatusUpdateFrequency": "10s",
        "volumeStatsAggPeriod": "1m",
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
    }
    return yaml.safe_dump(config, sort_keys=False)


def kubelet_config_path(c: ClusterLayout) -> Path:
    return c.dir / "kubelet" / "config.yaml"


def kubelet_config(c: ClusterLayout, capacity: tuple[int, int] | None = None) -> Path:
    path = kubelet_config_path(c)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(kubelet_config_text(c, capacity))
    return path


def kubelet_argv(c: ClusterLayout) -> list[str]:
    return [
        str(builds.kubernetes().binary("kubelet")),
        f"--config={kubelet_config(c)}",
        f"--kubeconfig={kubeconfig_path(c, 'kubelet')}",
        f"--hostname-override={c.node_name}",
        f"--node-ip={c.node_ip}",
        f"--root-dir={c.dir / 'kubelet' / 'root'}",
        f"--cert-dir={c.dir / 'kubelet' / 'pki'}",
        f"--node-labels=topology.kubehop.io/tier={layout.tier_of(c.name)},"
        f"topology.kubehop.io/cluster={c.name}",
        # Lowering OOM scores needs CAP_SYS_RESOURCE, which these machines withhold.
        "--oom-score-adj=0",
        "--v=1",
    ]


def kube_proxy_argv(c: ClusterLayout) -> list[str]:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig_path(c, "kube-proxy"))},
        "mode": "iptables",
        "clusterCIDR": str(c.pod_cidr),
        "hostnameOverride": c.node_name,
        # No listener in iptables mode; it names the node's primary address.
        "bindAddress": str(c.node_ip),
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        "oomScoreAdj": 0,
        # kube-proxy waits at least minSyncPeriod (1 s by default) between two syncs, so the
        # second half of a make-before-break switch (the pods' endpoints leaving after the
        # alias joined) waited up to a second. Clusters this small sync in milliseconds.
        "iptables": {"minSyncPeriod": "100ms"},
        # conntrack sysctls are read-only outside the initial network namespace: leave them.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }
    path = c.dir / "kube-proxy" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config, sort_keys=False)
    # A running kube-proxy exits when its configuration file is written, even unchanged.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return [str(builds.kubernetes().binary("kube-proxy")), f"--config={path}", "--v=1"]

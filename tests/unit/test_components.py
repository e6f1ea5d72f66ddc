"""How each upstream component is configured: the settings this machine needs."""

from pathlib import Path

import pytest
import yaml

from kubehop.testbed import builds, components, layout


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> layout.ClusterLayout:
    monkeypatch.setenv("KUBEHOP_STATE", str(tmp_path))
    return layout.layouts(("edge",))[0]


def test_kubelet_uses_its_own_cgroup_root_and_tolerates_cgroup_v1(
    cluster: layout.ClusterLayout,
) -> None:
    config = yaml.safe_load(components.kubelet_config(cluster).read_text())
    assert config["cgroupRoot"] == f"/{layout.CGROUP_PREFIX}edge"  # /kubehop-edge in slot 0
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["failCgroupV1"] is False
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["readOnlyPort"] == 0
    assert config["clusterDNS"] == [str(cluster.dns_service_ip)]
    assert config["containerRuntimeEndpoint"].endswith("containerd.sock")


def test_each_cluster_has_its_own_containerd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEHOP_STATE", str(tmp_path))
    edge, cloud = layout.layouts(("edge", "cloud"))
    a = components.containerd_config(edge, "reg/pause:1").read_text()
    b = components.containerd_config(cloud, "reg/pause:1").read_text()
    for key in ("root = ", "state = ", "address = ", "conf_dir = "):
        line_a = next(line for line in a.splitlines() if line.strip().startswith(key))
        line_b = next(line for line in b.splitlines() if line.strip().startswith(key))
        assert line_a != line_b, key
    assert 'sandbox_image = "reg/pause:1"' in a
    assert "netns_mounts_under_state_dir = true" in a
    assert "SystemdCgroup = false" in a


def test_kubernetes_wrapper_maps_every_staging_module() -> None:
    comp = builds.kubernetes()
    assert f"require k8s.io/kubernetes v{layout.KUBERNETES_VERSION}" in comp.go_mod
    minor, patch = layout.KUBERNETES_VERSION.split(".")[1:]
    for module in builds.K8S_STAGING:
        assert f"k8s.io/{module} => k8s.io/{module} v0.{minor}.{patch}" in comp.go_mod
    assert f"k8s.io/component-base/version.gitVersion=v{layout.KUBERNETES_VERSION}" in comp.ldflags
    assert f"k8s.io/client-go/pkg/version.gitVersion=v{layout.KUBERNETES_VERSION}" in comp.ldflags


def test_etcd_listens_on_loopback_only_and_wants_a_client_certificate(
    cluster: layout.ClusterLayout,
) -> None:
    argv = components.etcd_argv(cluster)
    urls = [a.split("=", 1)[1] for a in argv if a.startswith("--listen-")]
    assert sorted(urls) == ["https://127.0.0.1:2379", "https://127.0.0.1:2380"]
    assert "--client-cert-auth" in argv and "--peer-client-cert-auth" in argv
    assert f"--trusted-ca-file={cluster.pki_dir / 'etcd-ca.crt'}" in argv
    api = components.apiserver_argv(cluster)
    assert "--etcd-servers=https://127.0.0.1:2379" in api
    assert f"--etcd-certfile={cluster.pki_dir / 'apiserver-etcd-client.crt'}" in api


def test_every_listener_binds_one_address(cluster: layout.ClusterLayout) -> None:
    node = str(cluster.node_ip)
    assert f"--bind-address={node}" in components.apiserver_argv(cluster)
    for argv in (components.controller_manager_argv(cluster),
                 components.scheduler_argv(cluster)):
        assert "--bind-address=127.0.0.1" in argv
    kubelet = yaml.safe_load(components.kubelet_config(cluster).read_text())
    assert (kubelet["address"], kubelet["healthzBindAddress"]) == (node, "127.0.0.1")
    proxy_config = components.kube_proxy_argv(cluster)[1].removeprefix("--config=")
    proxy = yaml.safe_load(Path(proxy_config).read_text())
    assert proxy["bindAddress"] == node
    assert proxy["metricsBindAddress"] == "127.0.0.1:10249"
    assert proxy["healthzBindAddress"] == "127.0.0.1:10256"


def test_control_plane_kubeconfigs_use_the_address_the_api_server_listens_on(
    cluster: layout.ClusterLayout,
) -> None:
    components.write_pki(cluster)
    for stem in ("admin", "controller-manager", "scheduler", "kubelet", "kube-proxy"):
        config = yaml.safe_load(components.kubeconfig_path(cluster, stem).read_text())
        assert config["clusters"][0]["cluster"]["server"] == cluster.api_url, stem


def test_each_kubelet_keeps_pod_logs_in_its_own_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared /var/log/pods loses pod logs: each kubelet deletes those of pods it does not
    know."""
    monkeypatch.setenv("KUBEHOP_STATE", str(tmp_path))
    dirs = [yaml.safe_load(components.kubelet_config(c).read_text())["podLogsDir"]
            for c in layout.layouts(("edge", "cloud"))]
    assert len(set(dirs)) == 2
    assert all(d.startswith(str(tmp_path) + "/") for d in dirs)


def test_kubelet_reserves_what_is_not_its_tiers_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEHOP_STATE", str(tmp_path))
    machine = (2000, 24 * layout.GIB)
    edge, cloud = (yaml.safe_load(components.kubelet_config_text(c, machine))
                   for c in layout.layouts(("edge", "cloud")))
    assert edge["systemReserved"] == {
        "cpu": "1000m", "memory": str(20 * layout.GIB - layout.EVICTION_MEMORY)}
    assert cloud["systemReserved"] == {
        "cpu": "0m", "memory": str(8 * layout.GIB - layout.EVICTION_MEMORY)}
    # only the pods are capped at allocatable, as the kubelet does by default
    assert edge["enforceNodeAllocatable"] == ["pods"]
    assert edge["evictionHard"]["memory.available"] == "100Mi"


def test_machine_capacity_is_what_the_kubelet_reports() -> None:
    cpu, memory = components.machine_capacity()
    assert cpu >= 1000 and cpu % 1000 == 0
    assert memory > 256 * 2**20

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
    assert config["cgroupRoot"] == "/kubehop-edge"
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


def test_etcd_listens_on_loopback_only(cluster: layout.ClusterLayout) -> None:
    argv = components.etcd_argv(cluster)
    urls = [a for a in argv if a.startswith("--listen-")]
    assert urls and all("127.0.0.1" in a for a in urls)

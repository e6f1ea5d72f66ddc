"""What ``kubehop controller install`` puts in the management cluster (pure manifests)."""

from pathlib import Path

import pytest
import yaml

from kubehop.controller import install
from kubehop.errors import UsageError

INVENTORY = {
    "kubeconfig": "/home/u/.kube/config",
    "clusters": [
        {"name": "edge", "context": "edge-ctx", "tier": "edge",
         "proxyRules": [["ip", "netns", "exec", "kh-edge", "iptables-save"]]},
        {"name": "cloud", "context": "cloud-ctx", "tier": "cloud"},
    ],
    "dns": {"zone": "z.internal", "server": "10.0.0.2", "port": 53,
            "tsigKeyFile": "/home/u/tsig.key"},
}
KUBECONFIG = {
    "clusters": [{"name": "edge", "cluster": {"server": "https://10.0.0.11:6443"}},
                 {"name": "cloud", "cluster": {"server": "https://10.0.0.13:6443"}},
                 {"name": "other", "cluster": {"server": "https://10.9.9.9:6443"}}],
    "users": [{"name": "edge-admin", "user": {"token": "edge-token"}},
              {"name": "cloud-admin", "user": {"token": "cloud-token"}},
              {"name": "other", "user": {"token": "other-token"}}],
    "contexts": [{"name": "edge-ctx", "context": {"cluster": "edge", "user": "edge-admin"}},
                 {"name": "cloud-ctx", "context": {"cluster": "cloud", "user": "cloud-admin"}},
                 {"name": "other", "context": {"cluster": "other", "user": "other"}}],
}


def test_in_cluster_the_management_cluster_is_reached_with_the_pods_own_token() -> None:
    inv, kc = install.in_cluster_config(INVENTORY, KUBECONFIG, "cloud")
    assert inv["kubeconfig"] == "/etc/kubehop/kubeconfig"
    assert inv["dns"]["tsigKeyFile"] == "/etc/kubehop/tsig.key"
    assert all("proxyRules" not in c for c in inv["clusters"]), "a pod cannot enter node netns"
    assert INVENTORY["clusters"][0]["proxyRules"], "the caller's inventory is left as it was"
    text = yaml.safe_dump(kc)
    assert "cloud-token" not in text and "other-token" not in text, "only what it needs"
    assert "edge-token" in text  # a member cluster: the credentials the user gave
    ctx = {c["name"]: c["context"] for c in kc["contexts"]}
    assert set(ctx) == {"edge-ctx", "cloud-ctx"}
    user = next(u for u in kc["users"] if u["name"] == ctx["cloud-ctx"]["user"])
    assert user["user"] == {"tokenFile": f"{install.SA_DIR}/token"}
    server = next(c for c in kc["clusters"] if c["name"] == ctx["cloud-ctx"]["cluster"])
    assert server["cluster"] == {"server": "https://10.0.0.13:6443",
                                 "certificate-authority": f"{install.SA_DIR}/ca.crt"}


def test_an_unknown_management_cluster_is_refused() -> None:
    with pytest.raises(UsageError, match="'nope' is not in the inventory"):
        install.in_cluster_config(INVENTORY, KUBECONFIG, "nope")


def test_two_replicas_elect_a_leader_and_read_the_store_url_from_a_secret() -> None:
    (dep,) = install.controller_manifests("reg/kubehop/controller:abc", "cloud")
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == install.SERVICE_ACCOUNT
    (c,) = pod["containers"]
    assert "--leader-elect" in c["args"] and c["args"][c["args"].index("--cluster") + 1] == "cloud"
    env = {e["name"]: e["valueFrom"] for e in c["env"]}
    assert env["KUBEHOP_DB"] == {"secretKeyRef": {"name": install.DB_SECRET, "key": "url"}}


def test_the_database_password_is_only_in_its_secret() -> None:
    secret = install.db_secret(install.postgres_url("pw-123"), "pw-123")
    assert secret["stringData"]["password"] == "pw-123"
    manifests = yaml.safe_dump_all(install.postgres_manifests("reg/pg:1"))
    assert "pw-123" not in manifests and "secretName: kubehop-db" in manifests


def test_with_a_policy_the_leader_also_places_services() -> None:
    (dep,) = install.controller_manifests("reg/kubehop/controller:abc", "cloud",
                                          policy="edge-first")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["args"][:5] == ["controller", "run", "--policy-resource", "edge-first",
                             "--reconcile"]
    assert "--leader-elect" in c["args"]


def test_the_files_a_kubeconfig_names_travel_inside_it(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"CA")
    config = {"clusters": [{"name": "edge", "cluster": {"server": "https://e",
                                                        "certificate-authority": str(ca)}}],
              "users": [{"name": "u", "user": {"client-key-data": "S0VZ",
                                               "client-certificate": str(tmp_path / "no")}}]}
    with pytest.raises(UsageError, match="cannot read client-certificate"):
        install.inline_files(config, lambda p: Path(p).read_bytes())
    config["users"] = []
    out = install.inline_files(config, lambda p: Path(p).read_bytes())
    assert out["clusters"][0]["cluster"] == {"server": "https://e",
                                             "certificate-authority-data": "Q0E="}
    assert config["clusters"][0]["cluster"]["certificate-authority"] == str(ca), "copied"


def test_a_kubeconfig_without_the_management_context_is_a_clear_error() -> None:
    broken = {**KUBECONFIG, "contexts": KUBECONFIG["contexts"][:1]}
    with pytest.raises(UsageError, match="no context 'cloud-ctx'"):
        install.in_cluster_config(INVENTORY, broken, "cloud")

"""What kubehop copies and creates, as pure manifest rules."""

from __future__ import annotations

import pytest

from kubehop.domain import manifests as mf

SERVICE = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "orc8r", "namespace": "orc8r-ns", "uid": "u", "resourceVersion": "7",
                 "creationTimestamp": "t", "managedFields": [{}], "labels": {"app": "orc8r"},
                 "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
    "spec": {"type": "NodePort", "clusterIP": "10.100.0.7", "clusterIPs": ["10.100.0.7"],
             "selector": {"app": "orc8r"},
             "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 31000}]},
    "status": {"loadBalancer": {}},
}


def test_strip_removes_cluster_owned_fields_and_maps_namespace() -> None:
    out = mf.strip(SERVICE, namespace="other", migration_id="m1")
    meta = out["metadata"]
    assert meta["namespace"] == "other"
    assert "uid" not in meta and "resourceVersion" not in meta and "managedFields" not in meta
    assert "annotations" not in meta
    assert meta["labels"] == {"app": "orc8r", mf.LABEL_MIGRATION: "m1"}
    assert "status" not in out
    assert "clusterIP" not in out["spec"] and "clusterIPs" not in out["spec"]
    assert "nodePort" not in out["spec"]["ports"][0]
    assert SERVICE["spec"]["clusterIP"] == "10.100.0.7", "the input is left alone"


def test_strip_clears_node_binding_of_workloads_and_claims() -> None:
    dep = {"kind": "Deployment", "metadata": {"name": "d", "ownerReferences": [{}]},
           "spec": {"template": {"spec": {"nodeName": "edge-node", "containers": []}}}}
    assert "nodeName" not in mf.strip(dep, namespace="n", migration_id="m")["spec"][
        "template"]["spec"]
    pvc = {"kind": "PersistentVolumeClaim", "metadata": {"name": "c", "annotations": {
        "pv.kubernetes.io/bind-completed": "yes"}}, "spec": {"volumeName": "pv-1"}}
    out = mf.strip(pvc, namespace="n", migration_id="m")
    assert "volumeName" not in out["spec"] and "annotations" not in out["metadata"]


def test_service_account_tokens_become_a_request_for_a_fresh_token() -> None:
    token = {"kind": "Secret", "type": "kubernetes.io/service-account-token",
             "metadata": {"name": "t", "annotations": {
                 "kubernetes.io/service-account.name": "orc8r-sa",
                 "kubernetes.io/service-account.uid": "source-uid"}},
             "data": {"token": "c291cmNlLWNsdXN0ZXItdG9rZW4="}}
    out = mf.strip(token, namespace="n", migration_id="m")
    assert "data" not in out, "the source cluster's token must not travel"
    assert out["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "orc8r-sa"}
    assert out["type"] == "kubernetes.io/service-account-token"
    assert mf.token_account(token) == "orc8r-sa"
    token["metadata"]["annotations"] = {}
    with pytest.raises(ValueError, match="without the"):
        mf.strip(token, namespace="n", migration_id="m")


def test_pod_dependencies_finds_everything_the_pod_reads() -> None:
    pod = {
        "serviceAccountName": "orc8r-sa",
        "volumes": [{"name": "a", "configMap": {"name": "cm-vol"}},
                    {"name": "b", "secret": {"secretName": "sec-vol"}},
                    {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "d", "projected": {"sources": [{"configMap": {"name": "cm-proj"}},
                                                           {"configMap": {
                                                               "name": "kube-root-ca.crt"}}]}}],
        "containers": [{"envFrom": [{"configMapRef": {"name": "cm-env"}},
                                    {"secretRef": {"name": "sec-env"}}],
                        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec-key",
                                                                             "key": "k"}}}]}],
        "imagePullSecrets": [{"name": "pull"}],
    }
    deps = mf.pod_dependencies(pod)
    assert deps["ConfigMap"] == {"cm-vol", "cm-proj", "cm-env"}
    assert deps["Secret"] == {"sec-vol", "sec-env", "sec-key", "pull"}
    assert deps["PersistentVolumeClaim"] == {"data"}
    assert deps["ServiceAccount"] == {"orc8r-sa"}


def test_every_client_name_is_routed() -> None:
    assert mf.host_names("orc8r", "orc8r-ns", "cluster.local") == [
        "orc8r", "orc8r.orc8r-ns", "orc8r.orc8r-ns.svc", "orc8r.orc8r-ns.svc.cluster.local"]
    route = mf.ingress_route(name="kubehop-orc8r", namespace="orc8r-ns", hosts=["a", "b.c"],
                             backend="kubehop-orc8r", ports=[80], entrypoint="web",
                             migration_id="m", alias="orc8r-ns.orc8r")
    assert route["spec"]["routes"][0]["match"] == "Host(`a`) || Host(`b.c`)"
    assert route["spec"]["entryPoints"] == ["web"]


def test_alias_slice_joins_the_service_and_keeps_port_names() -> None:
    sl = mf.alias_endpoint_slice(service="orc8r", namespace="orc8r-ns", address="10.250.0.12",
                                 ports=SERVICE["spec"]["ports"], alias="orc8r-ns.orc8r",
                                 migration_id="m")
    labels = sl["metadata"]["labels"]
    assert labels["kubernetes.io/service-name"] == "orc8r"
    assert labels["endpointslice.kubernetes.io/managed-by"] == mf.MANAGED_BY
    assert sl["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    assert sl["endpoints"][0]["addresses"] == ["10.250.0.12"]


def test_drain_service_holds_the_old_cluster_ip() -> None:
    svc = mf.drain_service(service="orc8r", namespace="n", cluster_ip="10.100.0.7",
                           ports=SERVICE["spec"]["ports"], alias="n.orc8r", migration_id="m")
    assert svc["spec"]["clusterIP"] == "10.100.0.7"
    assert "selector" not in svc["spec"]
    assert svc["metadata"]["name"] == mf.drain_service_name("orc8r")


POD = {"containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}],
                       "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}}}]}


def test_the_readiness_gate_probes_what_the_kubelet_probes() -> None:
    assert mf.readiness_http(POD) == (8080, "/readyz")
    numeric = {"containers": [{"readinessProbe": {"httpGet": {"port": 9000}}}]}
    assert mf.readiness_http(numeric) == (9000, "/")
    assert mf.readiness_http({"containers": [{"readinessProbe": {"exec": {}}}]}) is None
    unknown = {"containers": [{"readinessProbe": {"httpGet": {"port": "nope"}}}]}
    assert mf.readiness_http(unknown) is None


def test_the_early_slice_lists_admitted_pods_on_the_backends_target_ports() -> None:
    service = {"metadata": {"name": "orc8r"},
               "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"},
                                  {"name": "raw", "port": 81, "targetPort": 9001},
                                  {"name": "gone", "port": 82, "targetPort": "missing"}]}}
    sl = mf.early_endpoint_slice(service=service, namespace="ns", addresses=["10.0.0.5"],
                                 pod_spec=POD, migration_id="m1")
    assert sl["metadata"]["name"] == "kubehop-orc8r-early"
    assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == "kubehop-orc8r"
    assert sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == mf.MANAGED_BY
    assert sl["endpoints"] == [{"addresses": ["10.0.0.5"], "conditions": {"ready": True}}]
    assert [(p["name"], p["port"]) for p in sl["ports"]] == [("http", 8080), ("raw", 9001)]

"""The mover's objects and the hook annotations: pure functions of the migration."""

from __future__ import annotations

from typing import Any

import pytest

from kubehop.domain import mover as mv

MID = "20261130-015531-d58680"


def test_hook_annotations_parse_or_say_what_is_wrong() -> None:
    assert mv.hook("http://:8080/admin/freeze") == (8080, "/admin/freeze")
    assert mv.hook(" http://:9000/q?state=freeze ") == (9000, "/q?state=freeze")
    for bad in ("exec:/bin/freeze", "http://:8080", "https://:8080/x", "http://:port/x",
                "/admin/freeze"):
        with pytest.raises(ValueError, match=r"http://:PORT/PATH|bad port"):
            mv.hook(bad)


def test_names_derive_from_the_migration_so_removal_needs_no_record() -> None:
    assert mv.pod_name(MID, "sender") == "kubehop-sender-d58680"
    assert mv.pod_name(MID, "receiver") == "kubehop-receiver-d58680"
    assert mv.secret_name(MID) == "kubehop-mover-d58680"
    assert mv.server_name(MID) == f"{MID}.mover.kubehop"


def test_the_sender_mounts_read_only_and_the_receiver_is_reached_by_server_name() -> None:
    sender = mv.mover_pod(role="sender", migration_id=MID, namespace="ns", image="img",
                          claims=["a", "b"], secret="s", target="10.0.0.1:8873", sni="x")
    spec = sender["spec"]
    mounts = spec["containers"][0]["volumeMounts"]
    assert [(m["mountPath"], m["readOnly"]) for m in mounts] == [
        ("/data", False), ("/data/a", True), ("/data/b", True), ("/secret", True),
        ("/work", False)]
    assert spec["volumes"][0] == {"name": "tree", "emptyDir": {}}
    assert all(v["persistentVolumeClaim"]["readOnly"] for v in spec["volumes"][1:3])
    assert spec["automountServiceAccountToken"] is False
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["MOVER_TARGET"] == "10.0.0.1:8873" and env["MOVER_ROLE"] == "sender"
    receiver = mv.mover_pod(role="receiver", migration_id=MID, namespace="ns", image="img",
                            claims=["a"], secret="s")
    assert receiver["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] is False
    route = mv.receiver_route(migration_id=MID, namespace="ns", entrypoint="transfer")
    assert route["spec"]["tls"] == {"passthrough": True}
    assert route["spec"]["routes"][0]["match"] == f"HostSNI(`{MID}.mover.kubehop`)"
    secret = mv.mover_secret(name="s", namespace="ns", psk="ab" * 32, token="t" * 43,
                             migration_id=MID)
    assert secret["stringData"] == {"psk": "kubehop:" + "ab" * 32, "token": "t" * 43}


def test_a_statefulsets_claims_are_one_per_template_and_replica() -> None:
    sts = {"metadata": {"name": "web"}, "spec": {"replicas": 2, "volumeClaimTemplates": [
        {"metadata": {"name": "data"}}, {"metadata": {"name": "logs"}}]}}
    assert mv.template_claims(sts) == ["data-web-0", "data-web-1", "logs-web-0", "logs-web-1"]
    assert mv.template_claims({"metadata": {"name": "d"}, "spec": {"replicas": 3}}) == []


def test_the_prepull_pod_pulls_every_image_where_the_pods_run_and_runs_none() -> None:
    spec = {"initContainers": [{"name": "init", "image": "reg/a:1"}],
            "containers": [{"name": "app", "image": "reg/b:2"},
                           {"name": "side", "image": "reg/a:1"}],
            "imagePullSecrets": [{"name": "pull"}], "nodeSelector": {"tier": "cloud"},
            "serviceAccountName": "app"}
    pod = mv.prepull_pod(migration_id="20261130-000000-abc123", namespace="ns", pod_spec=spec)
    assert pod["metadata"]["name"] == "kubehop-prepull-abc123"
    assert [c["image"] for c in pod["spec"]["containers"]] == ["reg/a:1", "reg/b:2"]
    assert {c["command"][0] for c in pod["spec"]["containers"]} == {mv.PREPULL_COMMAND}
    assert pod["spec"]["imagePullSecrets"] == [{"name": "pull"}]
    assert pod["spec"]["nodeSelector"] == {"tier": "cloud"}
    assert "serviceAccountName" not in pod["spec"] and pod["spec"]["restartPolicy"] == "Never"


def _status(*states: dict[str, object], image_id: str = "") -> dict[str, object]:
    return {"spec": {"containers": [{}] * 2},
            "status": {"containerStatuses": [{"image": "reg/a:1", "imageID": image_id,
                                              "state": s} for s in states]}}


def test_images_pulled_waits_for_every_container_and_names_an_image_that_cannot_be() -> None:
    creating = {"waiting": {"reason": "ContainerCreating"}}
    failed_start = {"terminated": {"reason": "StartError", "exitCode": 128}}
    assert mv.images_pulled({"spec": {"containers": [{}]}, "status": {}}) is None
    assert mv.images_pulled(_status(creating, creating)) is None
    assert mv.images_pulled(_status(failed_start, creating)) is None
    assert mv.images_pulled(_status(failed_start, failed_start)) is True
    assert mv.images_pulled(_status(creating, creating, image_id="reg/a@sha256:x")) is True
    with pytest.raises(ValueError, match="reg/a:1 cannot be pulled"):
        mv.images_pulled(_status(failed_start, {"waiting": {"reason": "ErrImagePull"}}))


def pods() -> dict[str, dict[str, Any]]:
    return {
        "sender": mv.mover_pod(role="sender", migration_id=MID, namespace="ns", image="img",
                               claims=["a"], secret="s", target="10.0.0.1:8873", sni="x"),
        "receiver": mv.mover_pod(role="receiver", migration_id=MID, namespace="ns",
                                 image="img", claims=["a"], secret="s"),
    }


def test_movers_run_as_root_with_only_the_capabilities_their_role_needs() -> None:
    for role, pod in pods().items():
        (container,) = pod["spec"]["containers"]
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert sc["readOnlyRootFilesystem"] is True
        assert (sc["runAsUser"], sc["runAsNonRoot"]) == (0, False)
        assert sc["capabilities"]["drop"] == ["ALL"], role
        assert pod["spec"]["automountServiceAccountToken"] is False
    adds = {role: set(pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"])
            for role, pod in pods().items()}
    assert adds["sender"] == {"DAC_OVERRIDE"}
    assert adds["receiver"] == {"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETFCAP",
                                "SETGID", "SYS_CHROOT"}
    # Pod Security's baseline profile admits both; DAC_READ_SEARCH (open_by_handle_at) it
    # would not, and neither has anything that reaches beyond its own files.
    baseline = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
    assert adds["sender"] | adds["receiver"] <= baseline


def test_the_root_is_read_only_and_the_workdir_an_empty_dir() -> None:
    for pod in pods().values():
        (container,) = pod["spec"]["containers"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        env = {e["name"]: e["value"] for e in container["env"]}
        assert volumes["work"] == {"name": "work", "emptyDir": {}}
        assert mounts["work"]["mountPath"] == env["TMPDIR"] == mv.WORK_DIR
        assert mounts["secret"]["readOnly"] is True
        assert volumes["secret"]["secret"] == {"secretName": "s", "defaultMode": 0o400}
        assert env["MOVER_TOKEN_FILE"] == f"{mounts['secret']['mountPath']}/{mv.TOKEN_KEY}"
        assert env["MOVER_PSK_FILE"] == f"{mounts['secret']['mountPath']}/{mv.PSK_KEY}"
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["limits"]["memory"] == mv.MEMORY_LIMIT


def policy(role: str, target: str = "") -> dict[str, Any]:
    return mv.network_policy(role=role, migration_id=MID, namespace="ns", target=target)


def test_each_mover_has_a_network_policy_that_selects_it_alone() -> None:
    for role, pod in pods().items():
        np = policy(role, "10.0.0.1:8873")
        assert np["metadata"]["name"] == pod["metadata"]["name"]
        selector = np["spec"]["podSelector"]["matchLabels"]
        assert selector.items() <= pod["metadata"]["labels"].items()
        other = "receiver" if role == "sender" else "sender"
        assert not selector.items() <= pods()[other]["metadata"]["labels"].items()
        assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_the_receiver_admits_the_api_and_transfer_ports_and_connects_nowhere() -> None:
    spec = policy("receiver")["spec"]
    (rule,) = spec["ingress"]
    assert "from" not in rule  # the pod proxy and Traefik: addresses differ per cluster
    assert rule["ports"] == [{"protocol": "TCP", "port": mv.API_PORT},
                             {"protocol": "TCP", "port": mv.TRANSFER_PORT}]
    assert spec["egress"] == []  # no rule: every connection out denied


def test_the_sender_admits_the_api_port_and_connects_only_to_the_target() -> None:
    spec = policy("sender", "10.250.0.13:8873")["spec"]
    assert spec["ingress"] == [{"ports": [{"protocol": "TCP", "port": mv.API_PORT}]}]
    assert spec["egress"] == [{"to": [{"ipBlock": {"cidr": "10.250.0.13/32"}}],
                               "ports": [{"protocol": "TCP", "port": 8873}]}]
    six = policy("sender", "[fd00::7]:9000")["spec"]["egress"]
    assert six[0]["to"] == [{"ipBlock": {"cidr": "fd00::7/128"}}]
    by_name = policy("sender", "lb.cloud.example:8873")["spec"]["egress"]
    dns = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert by_name == [{"ports": [{"protocol": "TCP", "port": 8873}]}, {"ports": dns}]

"""The mover's objects and the hook annotations: pure functions of the migration."""

from __future__ import annotations

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
        ("/data/a", True), ("/data/b", True), ("/secret", True)]
    assert all(v["persistentVolumeClaim"]["readOnly"] for v in spec["volumes"][:2])
    assert spec["automountServiceAccountToken"] is False
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["MOVER_TARGET"] == "10.0.0.1:8873" and env["MOVER_ROLE"] == "sender"
    receiver = mv.mover_pod(role="receiver", migration_id=MID, namespace="ns", image="img",
                            claims=["a"], secret="s")
    assert receiver["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] is False
    route = mv.receiver_route(migration_id=MID, namespace="ns", entrypoint="transfer")
    assert route["spec"]["tls"] == {"passthrough": True}
    assert route["spec"]["routes"][0]["match"] == f"HostSNI(`{MID}.mover.kubehop`)"
    secret = mv.psk_secret(name="s", namespace="ns", psk="ab" * 32, migration_id=MID)
    assert secret["stringData"]["psk"] == "kubehop:" + "ab" * 32


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

"""The paper's sample network functions on the testbed: orc8r (served) and agw (its client).

``deploy`` puts both in one cluster (edge by default) and waits until agw's check-ins succeed;
``agw_record`` reads agw's request record through the API server's service proxy, so no port
has to be exposed for it. With ``stateful``, orc8r's database is on a PersistentVolumeClaim and
its pods carry freeze/thaw hooks, so a migration can copy the data; ``agw_acked`` and
``orc8r_checkins`` then tell whether every acknowledged check-in survived.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml
from lightkube.resources.core_v1 import PersistentVolume

from kubehop.errors import KubehopError, TestbedError, UsageError
from kubehop.testbed import images, layout
from kubehop.testbed import testbed as tb
from kubehop.testbed.layout import ClusterLayout
from kubehop.waiting import NotYet, WaitTimeoutError, wait_for

ORC8R_NAMESPACE = "orc8r-ns"
AGW_NAMESPACE = "agw-ns"
AGW_TIMEOUT_S = 5.0
"""agw gives up on a request after this long (its AGW_TIMEOUT_S default)."""
STATE_CLAIM = "orc8r-state"
FREEZE_HOOK = "kubehop.io/freeze-hook"
THAW_HOOK = "kubehop.io/thaw-hook"


def cluster_layout(name: str) -> ClusterLayout:
    names = tb.recorded_clusters()
    if not names:
        raise UsageError("the testbed is not up; start it with 'kubehop testbed up'")
    for c in layout.layouts(names):
        if c.name == name:
            return c
    raise UsageError(f"no testbed cluster named {name!r}; the testbed has {', '.join(names)}")


PROBE_BELOW_MS = 5.0
"""Faster than this agw sends ``GET /healthz`` instead of check-ins: a check-in is an SQLite
write in a Python server, and orc8r's two replicas answer at most ~600 a second on this
2-core machine (measured), so 1 ms check-ins would measure orc8r's saturation, not the path."""


def agw_mode(interval_ms: float) -> str:
    """``checkin`` (numbered, stored writes) or ``probe`` (``GET /healthz``, nothing written)."""
    return "probe" if interval_ms < PROBE_BELOW_MS else "checkin"


def manifests(c: ClusterLayout, *, interval_ms: float, only_namespace: str | None = None,
              stateful: bool = False) -> str:
    """The sample's manifests for cluster ``c``; with ``only_namespace``, just that part (the
    benchmark redeploys orc8r while agw keeps running); with ``stateful``, orc8r keeps its
    state on a PersistentVolumeClaim instead of an emptyDir (see ``make_stateful``)."""
    text = images.asset("manifests", "sample.yaml").read_text().format(
        orc8r_image=images.orc8r_image().ref(),
        agw_image=images.agw_image().ref(),
        interval_ms=interval_ms,
        agw_mode=agw_mode(interval_ms),
    )
    if only_namespace is None and not stateful:
        return text
    docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(text) if d]
    if stateful:
        docs = make_stateful(docs)
    if only_namespace is not None:
        docs = [d for d in docs if d["metadata"].get("namespace") == only_namespace
                or (d["kind"] == "Namespace" and d["metadata"]["name"] == only_namespace)]
    return yaml.safe_dump_all(docs, sort_keys=False)


def make_stateful(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sample with orc8r's state on a claim (local-path, so both replicas on the node share
    it) and the hooks a migration calls around copying it: freeze holds orc8r's writes until the
    volume is copied, thaw lets them go on."""
    out: list[dict[str, Any]] = []
    for doc in docs:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "orc8r":
            out.append(_state_claim(doc["metadata"]["namespace"]))
            template = doc["spec"]["template"]
            template["metadata"].setdefault("annotations", {}).update({
                FREEZE_HOOK: "http://:8080/admin/freeze",
                THAW_HOOK: "http://:8080/admin/thaw",
            })
            volumes = template["spec"]["volumes"]
            state = next(v for v in volumes if v["name"] == "state")
            state.pop("emptyDir", None)
            state["persistentVolumeClaim"] = {"claimName": STATE_CLAIM}
        out.append(doc)
    return out


def _state_claim(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": STATE_CLAIM, "namespace": namespace, "labels": {"app": "orc8r"}},
        "spec": {
            "storageClassName": "local-path",
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def agw_record(c: ClusterLayout, *, since: float | None = None, until: float | None = None,
               raw: bool = False, complete: bool = True) -> dict[str, Any]:
    """agw's record (summary, or every request with ``raw``) over an optional time window.

    agw records a request when it ends, so a window is complete only once every request sent
    in it has answered or timed out: with ``until`` (and ``complete``), this waits until then.
    Otherwise requests still in flight (possibly failing) are not in the record yet.
    """
    if until is not None and complete:
        _wait_window_complete(until)
    data: dict[str, Any] = json.loads(_agw_get(c, "record/raw" if raw else "record",
                                               since=since, until=until, what="record"))
    return data


def _wait_window_complete(until: float) -> None:
    """agw records a request when it ends: wait until the last one sent by ``until`` has."""
    # A wait for a moment, not a condition: nothing but agw's own timeout says when the
    # last request of the window has ended.
    wait = until + AGW_TIMEOUT_S + 0.5 - time.time()
    if wait > 0:
        time.sleep(wait)


def _agw_get(c: ClusterLayout, endpoint: str, *, since: float | None, until: float | None,
             what: str) -> str:
    path = f"/api/v1/namespaces/{AGW_NAMESPACE}/services/agw:http/proxy/{endpoint}"
    params = {k: str(v) for k, v in (("since", since), ("until", until)) if v is not None}
    with tb.kube(c) as k:
        code, body = k.get_path(path, params=params, timeout=30)
    if code != 200:
        raise TestbedError(f"agw's {what} is not available in {c.name} (HTTP "
                           f"{code}); is the sample deployed there?")
    return body


def agw_acked(c: ClusterLayout, since: float | None = None, until: float | None = None, *,
              complete: bool = True) -> list[int]:
    """The seqs of agw's check-ins that orc8r acknowledged (HTTP 200), by scheduled time;
    with ``until`` (and ``complete``) it waits as ``agw_record`` does."""
    if until is not None and complete:
        _wait_window_complete(until)
    body = _agw_get(c, "acked", since=since, until=until, what="acked check-ins")
    return [int(s) for s in json.loads(body)["seqs"]]


def orc8r_checkins(c: ClusterLayout, network: str = "testnet",
                   gateway: str = "agw-1") -> list[int]:
    """The check-in seqs orc8r in cluster ``c`` holds for one gateway (sorted, distinct):
    after a migration that carried its data, ``agw_acked`` should be a subset of these."""
    path = (f"/api/v1/namespaces/{ORC8R_NAMESPACE}/services/orc8r:http/proxy/networks/"
            f"{network}/gateways/{gateway}/checkins")
    with tb.kube(c) as k:
        code, body = k.get_path(path, timeout=60)
    if code != 200:
        raise TestbedError(f"orc8r's check-ins of {network}/{gateway} are not available in "
                           f"{c.name} (HTTP {code}); is the sample deployed there?")
    return [int(s) for s in json.loads(body)["seqs"]]


def volume_dir(cluster: str, claim: str = STATE_CLAIM,
               namespace: str = ORC8R_NAMESPACE) -> Path:
    """Where the local-path provisioner keeps a claim (of orc8r's namespace by default) on this
    machine: the tests and the benchmark put files there as if the service had written them."""
    with tb.kube(cluster_layout(cluster)) as k:
        pvc = k.get("PersistentVolumeClaim", claim, namespace)
        volume = ((pvc or {}).get("spec") or {}).get("volumeName")
        if not volume:
            raise TestbedError(f"PVC {namespace}/{claim} in {cluster} is missing or not "
                               "bound; deploy the sample with --stateful")
        spec = k.client.get(PersistentVolume, volume).spec
    source = None if spec is None else (spec.hostPath or spec.local)
    if source is None:
        raise TestbedError(f"volume {volume} of PVC {namespace}/{claim} in {cluster} is "
                           "not on this machine (neither hostPath nor local)")
    return Path(source.path)


def remove(*, wait: bool = True) -> None:
    """Delete the sample (and whatever migrations made of it) from every testbed cluster."""
    for c in layout.layouts(tb.recorded_clusters()):
        with tb.kube(c) as k:
            k.delete_namespaces(ORC8R_NAMESPACE, AGW_NAMESPACE, timeout=180 if wait else None)


def deploy(cluster: str, *, interval_ms: float = 10, timeout: float = 180,
           stateful: bool = False) -> dict[str, Any]:
    """A fresh sample: any earlier one (wherever migrations left it) is removed first, then
    orc8r and agw go into ``cluster``; returns agw's record once its check-ins all succeed.
    With ``stateful``, orc8r's state is on a claim (removed with its namespace, so it starts
    empty)."""
    if not 1 <= interval_ms <= 10_000:
        raise UsageError(f"--interval-ms {interval_ms} is out of range; use 1 to 10000")
    c = cluster_layout(cluster)
    remove()
    for spec in (images.orc8r_image(), images.agw_image()):
        images.build_and_push(spec)
    # orc8r first, agw once orc8r serves: a client's first connections should not race
    # kube-proxy programming the new Service.
    with tb.kube(c) as k:
        for ns, name in ((ORC8R_NAMESPACE, "orc8r"), (AGW_NAMESPACE, "agw")):
            k.apply_yaml(manifests(c, interval_ms=interval_ms, only_namespace=ns,
                                   stateful=stateful))
            k.wait_rollout("Deployment", name, ns, timeout=timeout)
    return wait_agw_clean(c, timeout=60)


def wait_agw_clean(c: ClusterLayout, *, timeout: float) -> dict[str, Any]:
    """agw's record of the last moments once its check-ins all succeed (and there are some)."""
    last: dict[str, Any] = {}

    def clean() -> dict[str, Any]:
        nonlocal last
        try:
            last = agw_record(c, since=time.time() - 2, until=time.time() - 0.5,
                              complete=False)
        except KubehopError as exc:
            raise NotYet(str(exc)) from exc
        if last.get("ok", 0) > 0 and last.get("failed", 1) == 0:
            return last
        raise NotYet(f"last errors: {last.get('errors')}")

    try:
        return wait_for(clean, timeout=timeout, interval=1, what=f"agw's check-ins in {c.name}")
    except WaitTimeoutError as exc:
        raise TestbedError(f"agw in {c.name} is running but its check-ins to orc8r did not all "
                           f"succeed within {timeout:.0f}s (last errors: {last.get('errors')})"
                           ) from exc

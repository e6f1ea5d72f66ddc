"""The paper's sample network functions on the testbed: orc8r (served) and agw (its client).

``deploy`` puts both in one cluster (edge by default) and waits until agw's check-ins succeed;
``agw_record`` reads agw's request record through the API server's service proxy, so no port
has to be exposed for it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import yaml

from kubehop.errors import KubehopError, TestbedError, UsageError
from kubehop.testbed import images, layout
from kubehop.testbed import testbed as tb
from kubehop.testbed.layout import ClusterLayout
from kubehop.waiting import NotYet, WaitTimeoutError, wait_for

ORC8R_NAMESPACE = "orc8r-ns"
AGW_NAMESPACE = "agw-ns"
AGW_TIMEOUT_S = 5.0
"""agw gives up on a request after this long (its AGW_TIMEOUT_S default)."""


def cluster_layout(name: str) -> ClusterLayout:
    names = tb.recorded_clusters()
    if not names:
        raise UsageError("the testbed is not up; start it with 'kubehop testbed up'")
    for c in layout.layouts(names):
        if c.name == name:
            return c
    raise UsageError(f"no testbed cluster named {name!r}; the testbed has {', '.join(names)}")


def manifests(c: ClusterLayout, *, interval_ms: float, only_namespace: str | None = None) -> str:
    """The sample's manifests for cluster ``c``; with ``only_namespace``, just that part (the
    benchmark redeploys orc8r while agw keeps running)."""
    text = images.asset("manifests", "sample.yaml").read_text().format(
        orc8r_image=images.orc8r_image().ref(),
        agw_image=images.agw_image().ref(),
        interval_ms=interval_ms,
    )
    if only_namespace is None:
        return text
    docs = [d for d in yaml.safe_load_all(text) if d and (
        d["metadata"].get("namespace") == only_namespace
        or (d["kind"] == "Namespace" and d["metadata"]["name"] == only_namespace))]
    return yaml.safe_dump_all(docs)


def agw_record(c: ClusterLayout, *, since: float | None = None, until: float | None = None,
               raw: bool = False, complete: bool = True) -> dict[str, Any]:
    """agw's record (summary, or every request with ``raw``) over an optional time window.

    agw records a request when it ends, so a window is complete only once every request sent
    in it has answered or timed out: with ``until`` (and ``complete``), this waits until then.
    Otherwise requests still in flight (possibly failing) are not in the record yet.
    """
    if until is not None and complete:
        # A wait for a moment, not a condition: nothing but agw's own timeout says when the
        # last request of the window has ended.
        wait = until + AGW_TIMEOUT_S + 0.5 - time.time()
        if wait > 0:
            time.sleep(wait)
    path = f"/api/v1/namespaces/{AGW_NAMESPACE}/services/agw:http/proxy/record"
    if raw:
        path += "/raw"
    params = {k: str(v) for k, v in (("since", since), ("until", until)) if v is not None}
    with tb.kube(c) as k:
        code, body = k.get_path(path, params=params, timeout=30)
    if code != 200:
        raise TestbedError(f"agw's record is not available in {c.name} (HTTP "
                           f"{code}); is the sample deployed there?")
    data: dict[str, Any] = json.loads(body)
    return data


def remove(*, wait: bool = True) -> None:
    """Delete the sample (and whatever migrations made of it) from every testbed cluster."""
    for c in layout.layouts(tb.recorded_clusters()):
        with tb.kube(c) as k:
            k.delete_namespaces(ORC8R_NAMESPACE, AGW_NAMESPACE, timeout=180 if wait else None)


def deploy(cluster: str, *, interval_ms: float = 10, timeout: float = 180) -> dict[str, Any]:
    """A fresh sample: any earlier one (wherever migrations left it) is removed first, then
    orc8r and agw go into ``cluster``; returns agw's record once its check-ins all succeed."""
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
            k.apply_yaml(manifests(c, interval_ms=interval_ms, only_namespace=ns))
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

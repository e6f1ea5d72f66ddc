"""The paper's sample network functions on the testbed: orc8r (served) and agw (its client).

``deploy`` puts both in one cluster (edge by default) and waits until agw's check-ins succeed;
``agw_record`` reads agw's request record through the API server's service proxy, so no port
has to be exposed for it.
"""

from __future__ import annotations

import time
from typing import Any

import yaml

from kubehop.errors import TestbedError, UsageError
from kubehop.testbed import images, layout
from kubehop.testbed import testbed as tb
from kubehop.testbed.layout import ClusterLayout

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
        wait = until + AGW_TIMEOUT_S + 0.5 - time.time()
        if wait > 0:
            time.sleep(wait)
    path = f"/api/v1/namespaces/{AGW_NAMESPACE}/services/agw:http/proxy/record"
    if raw:
        path += "/raw"
    params = {k: str(v) for k, v in (("since", since), ("until", until)) if v is not None}
    with tb.api_client(c) as client:
        reply = client.get(path, params=params, timeout=30)
    if reply.status_code != 200:
        raise TestbedError(f"agw's record is not available in {c.name} (HTTP "
                           f"{reply.status_code}); is the sample deployed there?")
    data: dict[str, Any] = reply.json()
    return data


def remove(*, wait: bool = True) -> None:
    """Delete the sample (and whatever migrations made of it) from every testbed cluster."""
    for c in layout.layouts(tb.recorded_clusters()):
        tb.kubectl(c, "delete", "namespace", ORC8R_NAMESPACE, AGW_NAMESPACE, "--ignore-not-found",
                   f"--wait={str(wait).lower()}", "--timeout=180s")


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
    for ns, name in ((ORC8R_NAMESPACE, "orc8r"), (AGW_NAMESPACE, "agw")):
        tb.kubectl(c, "apply", "--server-side", "-f", "-",
                   stdin=manifests(c, interval_ms=interval_ms, only_namespace=ns))
        tb.kubectl(c, "-n", ns, "rollout", "status", f"deployment/{name}",
                   f"--timeout={int(timeout)}s")
    deadline = time.monotonic() + 60
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            record = agw_record(c, since=time.time() - 2, until=time.time() - 0.5,
                                complete=False)
        except TestbedError:
            record = {}
        if record.get("ok", 0) > 0 and record.get("failed", 1) == 0:
            return record
        time.sleep(1)
    raise TestbedError(f"agw in {cluster} is running but its check-ins to orc8r did not all "
                       f"succeed within 60s (last errors: {record.get('errors')})")

"""kubectl for the tests: the user's own tool, against the testbed as a user reaches it.

kubehop itself talks to Kubernetes only through lightkube (kubehop.adapters.kube); the tests
look at the clusters with kubectl (built with them, so its version matches), through the
kubeconfig ``kubehop testbed kubeconfig`` names, one context per cluster.
"""

from __future__ import annotations

import subprocess

from kubehop.testbed import testbed as tb
from kubehop.testbed.layout import ClusterLayout


def kubectl(cluster: ClusterLayout | str, *args: str, stdin: str | None = None) -> str:
    """``kubectl ARGS`` in the context of ``cluster``; its stdout, or AssertionError with its
    last error line."""
    context = cluster if isinstance(cluster, str) else cluster.name
    argv = [str(tb.kubectl_binary()), "--kubeconfig", str(tb.kubeconfig_file()),
            "--context", context, *args]
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=600,
                            check=False)
    if result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args[:3])} on cluster {context} failed: "
                             f"{result.stderr.strip()[-600:]}")
    return result.stdout


def fresh_namespaces(cluster: ClusterLayout | str, *names: str) -> None:
    """Make sure none of ``names`` exists (waiting out an earlier run's deletion), so a test's
    set-up never meets a namespace that is still being deleted."""
    kubectl(cluster, "delete", "namespace", *names, "--ignore-not-found", "--wait=true",
            "--timeout=300s")

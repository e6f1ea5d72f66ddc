"""Reads each node's service-proxy rules with the commands the inventory gives (``proxyRules``:
one command per node that prints its ``iptables-save -t nat``), so the switch can wait for what
the proxy has actually programmed. The testbed's command enters the node's network namespace;
on your own clusters it can be an ``ssh`` to each node (see docs/migration.md)."""

from __future__ import annotations

import subprocess

from kubehop.domain.proxyrules import programmed_endpoints
from kubehop.errors import KubehopError


class ProxyRulesError(KubehopError):
    pass


class ProxyRules:
    def __init__(self, cluster: str, commands: tuple[tuple[str, ...], ...]) -> None:
        self.cluster = cluster
        self.commands = commands

    def endpoints(self, namespace: str, service: str) -> list[dict[str, set[str]]]:
        """Per node, port name -> programmed ``ip:port`` destinations of the Service."""
        return [programmed_endpoints(self._read(cmd), namespace, service)
                for cmd in self.commands]

    def _read(self, command: tuple[str, ...]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProxyRulesError(f"{self.cluster}: cannot read the service proxy's rules "
                                  f"with {command[0]!r}: {exc}") from exc
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ProxyRulesError(f"{self.cluster}: reading the service proxy's rules failed "
                                  f"(exit {done.returncode}): {last}")
        return done.stdout

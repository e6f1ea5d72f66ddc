"""What a node's service proxy has programmed for a Service, read from its rules.

kube-proxy (iptables mode) writes one jump per endpoint into the Service's ``KUBE-SVC-*`` chain,
commented ``"<namespace>/<service>:<port name> -> <ip>:<port>"`` (no ``:<port name>`` for an
unnamed port). Those comments are the proxy's own statement of where new connections go, so the
switch can check that a node sends clients to the new endpoints instead of guessing how long the
proxy takes (docs/migration.md, "Make-before-break").
"""

from __future__ import annotations

import re

_JUMP = re.compile(r'^-A KUBE-SVC-\S+ .*--comment "(?P<svc>[^" ]+) -> (?P<dest>[^"]+)"')


def programmed_endpoints(rules: str, namespace: str, service: str) -> dict[str, set[str]]:
    """Port name ("" for an unnamed port) -> the ``ip:port`` destinations of the Service's
    chains in one node's ``iptables-save -t nat`` output; empty when it has none."""
    found: dict[str, set[str]] = {}
    prefix = f"{namespace}/{service}"
    for line in rules.splitlines():
        match = _JUMP.match(line)
        if match is None:
            continue
        name, _, port = match["svc"].partition(":")
        if name == prefix:
            found.setdefault(port, set()).add(match["dest"])
    return found

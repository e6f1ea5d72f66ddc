"""The cluster inventory: a small YAML file naming each cluster's context, tier, load-balancer
address and ingress entry points, and the private DNS zone with its server and TSIG key file.

Found by ``--inventory``, else ``$KUBEHOP_INVENTORY``, else the testbed's when it is up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from kubehop.domain.model import ClusterInfo, DnsZoneInfo, Inventory
from kubehop.errors import UsageError

SLOT_ENV = "KUBEHOP_TESTBED_SLOT"
MAX_SLOTS = 4


def testbed_slot() -> int:
    """Which testbed of this machine is meant: ``$KUBEHOP_TESTBED_SLOT``, 0 by default.

    Here, below the testbed package, because finding an inventory needs it too: a command of
    slot 1 that fell back to slot 0's inventory would move services on another testbed."""
    raw = os.environ.get(SLOT_ENV, "0").strip() or "0"
    if not raw.isdigit() or int(raw) >= MAX_SLOTS:
        raise UsageError(f"{SLOT_ENV}={raw!r} is not a testbed slot; use 0 to {MAX_SLOTS - 1} "
                         "(or unset it)")
    return int(raw)


def testbed_state_dir() -> Path:
    """Everything a testbed's ``up`` creates (``$KUBEHOP_STATE``, else by slot). No slot's
    directory is a prefix of another's: ``down`` stops every process naming its own."""
    slot = testbed_slot()
    default = "/var/lib/kubehop/testbed" if slot == 0 else f"/var/lib/kubehop/slot{slot}/testbed"
    return Path(os.environ.get("KUBEHOP_STATE", default))


def testbed_inventory() -> Path:
    """The inventory ``kubehop testbed up`` writes for this slot's testbed."""
    return testbed_state_dir() / "inventory.yaml"

EXAMPLE = """kubeconfig: ~/.kube/config
clusters:
  - {name: edge, context: edge-admin, tier: edge, loadBalancer: 10.0.0.10,
     entrypoints: {web: 80, transfer: 8873},   # transfer: a TCP entry point for volume data
     proxyRules: [[ssh, edge-node1, iptables-save, -t, nat]]}  # optional, one per node
dns: {zone: testnetwork.internal, server: 10.0.0.2, port: 53, tsigKeyFile: /path/tsig.key}
prometheus: http://10.0.0.3:9090          # for the controller: scrapes every cluster
probeImage: registry.example/kubehop/linkprobe:TAG   # measures RTTs between clusters
moverImage: registry.example/kubehop/mover:TAG       # copies volume data (stateful services)
"""


def _expand(path: str, what: str) -> Path:
    """``~`` expanded; a ``~user`` that does not exist is the user's mistake, not a crash."""
    try:
        return Path(path).expanduser()
    except RuntimeError as exc:
        raise UsageError(f"{what} {path!r}: cannot expand '~' ({exc})") from exc


def locate(path: str | None) -> Path:
    if path:
        return _expand(path, "--inventory")
    if os.environ.get("KUBEHOP_INVENTORY"):
        return _expand(os.environ["KUBEHOP_INVENTORY"], "KUBEHOP_INVENTORY")
    if testbed_inventory().exists():
        return testbed_inventory()
    raise UsageError("no inventory: pass --inventory FILE or set KUBEHOP_INVENTORY "
                     "(or start 'kubehop testbed up', which writes one)")


def _bad(path: Path, what: str) -> UsageError:
    return UsageError(f"inventory {path}: {what}")


def _text(data: dict[Any, Any], key: str, where: str, path: Path,
          default: str | None = None) -> str:
    """A one-line string field: names, addresses, paths. YAML numbers, lists or dates in
    their place are mistakes to report, not values to ``str()``."""
    value = data.get(key)
    if value is None and default is not None:
        return default
    if value is None or value == "":
        raise _bad(path, f"{where or 'the inventory'} lacks {key}")
    field = f"{where}.{key}" if where else key
    if not isinstance(value, str):
        raise _bad(path, f"{field} must be a string, not {type(value).__name__}")
    if not value.strip() or not value.isprintable():
        raise _bad(path, f"{field} must be printable text on one line, got {value[:60]!r}")
    return value


def _port(value: object, what: str, path: Path) -> int:
    # bool is an int to Python, and 80.9 would silently become 80: accept true integers only.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise _bad(path, f"{what} must be a port number (1-65535), got {str(value)[:40]!r}")
    return value


def _entrypoints(item: dict[Any, Any], where: str, path: Path) -> dict[int, str]:
    entry = item.get("entrypoints")
    if entry is None:
        return {80: "web"}
    if not isinstance(entry, dict) or not entry:
        raise _bad(path, f"{where}.entrypoints must map names to ports, e.g. {{web: 80}}")
    entrypoints: dict[int, str] = {}
    for name, port in entry.items():
        if not isinstance(name, str) or not name.isprintable() or not name.strip():
            raise _bad(path, f"{where}.entrypoints must map names to ports, e.g. {{web: 80}}; "
                             f"{str(name)[:40]!r} is not a name")
        number = _port(port, f"{where}.entrypoints.{name}", path)
        if number in entrypoints:
            raise _bad(path, f"{where}.entrypoints gives port {number} twice "
                             f"({entrypoints[number]}, {name})")
        entrypoints[number] = name
    return entrypoints


def _commands(item: dict[Any, Any], where: str, path: Path) -> tuple[tuple[str, ...], ...]:
    """``proxyRules``: a list of commands (each a list of words), one per node."""
    value = item.get("proxyRules")
    if value is None:
        return ()
    usage = (f"{where}.proxyRules must be a list of commands, one per node, each a list of "
             f"words, e.g. [[ssh, node1, iptables-save, -t, nat]]")
    if not isinstance(value, list) or not value:
        raise _bad(path, usage)
    commands = []
    for command in value:
        if (not isinstance(command, list) or not command
                or not all(isinstance(w, str) and w for w in command)):
            raise _bad(path, usage)
        commands.append(tuple(command))
    return tuple(commands)


def parse(data: Any, path: Path) -> Inventory:
    """The inventory from parsed YAML; any mistake is a one-line :class:`UsageError` naming
    the field, so a hand-written file never ends in a traceback."""
    if not isinstance(data, dict) or not isinstance(data.get("clusters"), list):
        raise _bad(path, "want a mapping with a 'clusters' list")
    clusters: dict[str, ClusterInfo] = {}
    for i, item in enumerate(data["clusters"]):
        where = f"clusters[{i}]"
        if not isinstance(item, dict):
            raise _bad(path, f"{where} is not a mapping")
        missing = [k for k in ("name", "context", "loadBalancer") if item.get(k) in (None, "")]
        if missing:
            raise _bad(path, f"{where} lacks {', '.join(missing)}")
        name = _text(item, "name", where, path)
        if name in clusters:
            raise _bad(path, f"{where}: cluster {name!r} is listed twice")
        clusters[name] = ClusterInfo(
            name=name, context=_text(item, "context", where, path),
            tier=_text(item, "tier", where, path, default="edge"),
            load_balancer=_text(item, "loadBalancer", where, path),
            entrypoints=_entrypoints(item, where, path),
            cluster_domain=_text(item, "clusterDomain", where, path, default="cluster.local"),
            proxy_rules=_commands(item, where, path),
        )
    dns_data = data.get("dns")
    dns_info = None
    if dns_data is not None:
        if not isinstance(dns_data, dict):
            raise _bad(path, "dns must be a mapping with zone, server, port and tsigKeyFile")
        missing = [k for k in ("zone", "server", "tsigKeyFile") if dns_data.get(k) in (None, "")]
        if missing:
            raise _bad(path, f"dns lacks {', '.join(missing)}")
        zone = _text(dns_data, "zone", "dns", path).rstrip(".")
        if not zone:
            raise _bad(path, "dns.zone must name a zone, not the root")
        key_file = _expand(_text(dns_data, "tsigKeyFile", "dns", path),
                           f"inventory {path}: dns.tsigKeyFile")
        dns_info = DnsZoneInfo(zone=zone, server=_text(dns_data, "server", "dns", path),
                               port=_port(dns_data.get("port", 53), "dns.port", path),
                               key_file=str(key_file))
    kubeconfig = _text(data, "kubeconfig", "", path, default="~/.kube/config")
    prometheus = _text(data, "prometheus", "", path, default="") or None
    probe_image = _text(data, "probeImage", "", path, default="") or None
    mover_image = _text(data, "moverImage", "", path, default="") or None
    return Inventory(kubeconfig=str(_expand(kubeconfig, f"inventory {path}: kubeconfig")),
                     clusters=clusters, dns=dns_info, prometheus=prometheus,
                     probe_image=probe_image, mover_image=mover_image)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's messages span several lines; keep the problem and where it is."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{exc.problem or exc.context or 'syntax error'}{where}"
    return " ".join(str(exc).split())


def load(path: str | None = None) -> Inventory:
    where = locate(path)
    try:
        data = yaml.safe_load(where.read_bytes().decode())
    except OSError as exc:
        raise UsageError(f"cannot read inventory {where}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"inventory {where} is not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"inventory {where} is not valid YAML: {_yaml_problem(exc)}") from exc
    except (ValueError, RecursionError) as exc:
        # PyYAML lets some values through its checks, e.g. a date 2024-13-01 or deep nesting.
        raise UsageError(f"inventory {where} has a value YAML cannot represent: "
                         f"{' '.join(str(exc).split())[:120]}") from exc
    return parse(data, where)


def dump(inv: Inventory) -> str:
    data: dict[str, Any] = {
        "kubeconfig": inv.kubeconfig,
        "clusters": [{"name": c.name, "context": c.context, "tier": c.tier,
                      "loadBalancer": c.load_balancer,
                      "entrypoints": {n: p for p, n in c.entrypoints.items()},
                      "clusterDomain": c.cluster_domain,
                      **({"proxyRules": [list(cmd) for cmd in c.proxy_rules]}
                         if c.proxy_rules else {})}
                     for c in inv.clusters.values()],
    }
    if inv.dns:
        data["dns"] = {"zone": inv.dns.zone, "server": inv.dns.server, "port": inv.dns.port,
                       "tsigKeyFile": inv.dns.key_file}
    if inv.prometheus:
        data["prometheus"] = inv.prometheus
    if inv.probe_image:
        data["probeImage"] = inv.probe_image
    if inv.mover_image:
        data["moverImage"] = inv.mover_image
    return yaml.safe_dump(data, sort_keys=False)

"""What the testbed hands its users: one kubeconfig for all its clusters, and the inventory that
tells kubehop what those clusters are (tiers, load balancers, the private DNS zone)."""

from __future__ import annotations

from kubehop.adapters import inventory as inv_file
from kubehop.domain.model import TRANSFER_ENTRYPOINT, ClusterInfo, DnsZoneInfo, Inventory
from kubehop.domain.mover import TRANSFER_PORT
from kubehop.testbed import clouddns, images, layout, monitoring
from kubehop.testbed.layout import ClusterLayout
from kubehop.testbed.pki import KubeconfigEntry, kubeconfig_dict, write_kubeconfig
from kubehop.testbed.state import kubeconfig_file, recorded_clusters


def _kubeconfig_entry(c: ClusterLayout, identity: str) -> KubeconfigEntry:
    return KubeconfigEntry(
        context=c.name,
        server=c.api_url,
        ca_pem=(c.pki_dir / "ca.crt").read_bytes(),
        cert_pem=(c.pki_dir / f"{identity}.crt").read_bytes(),
        key_pem=(c.pki_dir / f"{identity}.key").read_bytes(),
    )


def write_combined_kubeconfig(clusters: list[ClusterLayout]) -> None:
    """One kubeconfig, one context per cluster named after it, admin credentials (mode 0600)."""
    entries = [_kubeconfig_entry(c, "admin") for c in clusters]
    write_kubeconfig(kubeconfig_file(), kubeconfig_dict(entries))


def inventory() -> Inventory:
    """The testbed's clusters as kubehop's inventory: contexts, tiers, load balancers, the
    private zone with its TSIG key file."""
    return Inventory(
        kubeconfig=str(kubeconfig_file()),
        clusters={
            c.name: ClusterInfo(name=c.name, context=c.name, tier=layout.tier_of(c.name),
                                load_balancer=str(c.node_ip),
                                entrypoints={80: "web", TRANSFER_PORT: TRANSFER_ENTRYPOINT},
                                cluster_domain=layout.CLUSTER_DOMAIN,
                                proxy_rules=(("ip", "netns", "exec", c.netns, "iptables-save",
                                              "-t", "nat"),))
            for c in layout.layouts(recorded_clusters())
        },
        dns=DnsZoneInfo(zone=clouddns.DEFAULT_ZONE, server=str(layout.HOST_ADDRESS),
                        port=clouddns.DNS_PORT, key_file=str(clouddns.key_file())),
        prometheus=monitoring.prometheus_url(),
        probe_image=images.linkprobe_image().ref(),
        mover_image=images.mover_image().ref(),
    )


def inventory_yaml() -> str:
    return inv_file.dump(inventory())

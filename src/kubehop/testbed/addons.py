"""What runs inside every cluster besides Kubernetes itself: CoreDNS, Traefik, the storage
provisioner, and the images of the sample services. Installed by ``up``, and brought to what
this kubehop ships on a running testbed (applying unchanged manifests changes nothing)."""

from __future__ import annotations

from functools import partial

import yaml

from kubehop.testbed import builds, clouddns, images, layout, storage
from kubehop.testbed.access import deployment_available, kube, storage_ready
from kubehop.testbed.layout import ClusterLayout
from kubehop.testbed.readiness import Say, succeeds, wait_ready


def apply(c: ClusterLayout, manifests: str) -> None:
    with kube(c) as k:
        k.apply_yaml(manifests)


def bootstrap_manifests(c: ClusterLayout, coredns_ref: str) -> str:
    text = images.asset("manifests", "bootstrap.yaml").read_text()
    return text.format(
        dns_ip=c.dns_service_ip, coredns_image=coredns_ref, cluster_domain=layout.CLUSTER_DOMAIN,
        dns_zone=clouddns.DEFAULT_ZONE, dns_server=layout.HOST_ADDRESS,
    )


def traefik_manifests(c: ClusterLayout, image: str) -> str:
    """Traefik's CRDs and ClusterRole of the built version, then our Deployment."""
    bin_dir = builds.traefik().bin_dir
    crds = (bin_dir / "kubernetes-crd-definition-v1.yml").read_text()
    rbac = [d for d in yaml.safe_load_all((bin_dir / "kubernetes-crd-rbac.yml").read_text())
            if d and d.get("kind") == "ClusterRole"]
    ours = images.asset("manifests", "traefik.yaml").read_text().format(
        traefik_image=image, node_ip=c.node_ip)
    return "\n---\n".join([crds, yaml.safe_dump_all(rbac), ours])


def sample_images() -> tuple[images.ImageSpec, ...]:
    """The images of the sample services, the tests' HTTP server, the link prober and the
    volume data mover."""
    return (images.httpd_image(), images.orc8r_image(), images.agw_image(),
            images.linkprobe_image(), images.mover_image())


def push_sample_images() -> None:
    """Build and push every sample image; each is a registry check when it is there already."""
    for spec in sample_images():
        images.build_and_push(spec)


def storage_images() -> tuple[str, str]:
    """The provisioner's and its helper's image references, built and pushed if missing (two
    registry checks when they are there)."""
    return (images.build_and_push(images.local_path_provisioner_image()),
            images.build_and_push(images.volume_helper_image()))


def wait_storage(c: ClusterLayout) -> None:
    wait_ready(f"the storage provisioner of {c.name}", partial(storage_ready, c), timeout=120,
               log=c.log_dir / "kubelet.log")


def install_samples_and_storage(clusters: list[ClusterLayout]) -> None:
    """On a new testbed: the sample images, then the provisioner in every cluster (not waited
    for here)."""
    # The sample images are built while the nodes settle (the first time only).
    push_sample_images()
    storage_refs = storage_images()  # the helper shares the sample images' Debian base
    for c in clusters:
        apply(c, storage.manifests(c, *storage_refs))


def wait_addons(clusters: list[ClusterLayout], say: Say) -> None:
    """Until every cluster's CoreDNS, Traefik and storage provisioner are available."""
    for c in clusters:
        wait_ready(f"CoreDNS of {c.name}",
                   partial(deployment_available, c, "kube-system", "coredns"),
                   timeout=120, log=c.log_dir / "kubelet.log")
        wait_ready(f"Traefik of {c.name}", partial(deployment_available, c, "traefik", "traefik"),
                   timeout=120, log=c.log_dir / "kubelet.log")
        wait_storage(c)
        say(f"{c.name}: cluster DNS at {c.dns_service_ip}, ingress at {c.node_ip}:80, "
            f"default StorageClass {storage.STORAGE_CLASS}")


def ensure_storage(clusters: list[ClusterLayout], say: Say,
                   progress: builds.Progress | None = None) -> None:
    """Install or update the provisioner on a running testbed. Server-side apply of unchanged
    manifests changes nothing, so on a testbed that has it this costs a build-cache check, two
    registry checks and one apply per cluster."""
    missing = [c.name for c in clusters if not succeeds(partial(storage_ready, c))]
    builds.build(builds.local_path_provisioner(), progress=progress)
    refs = storage_images()
    for c in clusters:
        apply(c, storage.manifests(c, *refs))
    for c in clusters:
        wait_storage(c)
    if missing:
        say(f"storage: local-path-provisioner installed in {', '.join(missing)}")


def refresh_traefik(clusters: list[ClusterLayout], say: Say) -> None:
    """Traefik as this kubehop configures it (a new entry point, say) on a running testbed:
    applying the same manifests changes nothing, changed ones roll Traefik out once."""
    ref = images.build_and_push(images.traefik_image())
    for c in clusters:
        with kube(c) as k:
            before = (k.get("Deployment", "traefik", "traefik") or {}).get("metadata", {}).get(
                "generation")
            k.apply_yaml(traefik_manifests(c, ref))
            after = (k.get("Deployment", "traefik", "traefik") or {}).get("metadata", {}).get(
                "generation")
            if before != after:
                k.wait_rollout("Deployment", "traefik", "traefik", timeout=120)
                say(f"{c.name}: Traefik updated")

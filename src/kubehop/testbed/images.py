"""Container images without any outside registry.

The testbed runs a local registry (distribution v3) on the host's bridge address; every cluster's
containerd pulls from it, as real clusters pull from theirs. Images are built with buildah
(storage kept in the cache) from:

- ``scratch`` plus a static binary (the pod sandbox ``pause``, CoreDNS), or
- a Debian rootfs with Python made by ``mmdebstrap`` (the base of the sample services), in one of
  a few flavours (``BASE_FLAVOURS``): ``python`` alone, or ``mover`` which adds rsync and stunnel
  for the volume mover.

Each image's tag is a hash of everything that goes into it, so a warm ``up`` pushes nothing and a
changed sample service gets a new tag, never a stale pull.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import httpx

from kubehop.errors import BuildError, TestbedError
from kubehop.testbed import builds, layout

DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3-minimal", "libpython3.11-stdlib", "ca-certificates")
# Debian bases by name (ImageSpec.base): each is its own cached rootfs keyed by its packages.
BASE_FLAVOURS: dict[str, tuple[str, ...]] = {
    "python": BASE_PACKAGES,
    "mover": (*BASE_PACKAGES, "rsync", "stunnel4"),
    "postgres": (*BASE_PACKAGES, "postgresql-15"),
}
_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")


def asset(*parts: str) -> Path:
    """Path of a file shipped in ``kubehop/testbed/assets``."""
    return Path(str(resources.files("kubehop.testbed").joinpath("assets", *parts)))


@dataclass(frozen=True)
class ImageSpec:
    """An image: base (``scratch`` or a ``BASE_FLAVOURS`` name), files to copy (dest -> source),
    command."""

    name: str
    base: str
    files: dict[str, Path] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def tag(self) -> str:
        h = hashlib.sha256()
        h.update(
            json.dumps(
                [
                    self.name,
                    self.base,
                    self.entrypoint,
                    sorted(self.env.items()),
                    BASE_FLAVOURS.get(self.base, []),
                ]
            ).encode()
        )
        for dest, src in sorted(self.files.items()):
            h.update(dest.encode())
            sources = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
            for path in sources:
                if path.suffix == ".pyc":
                    continue
                h.update(str(path.relative_to(src) if src.is_dir() else "").encode())
                h.update(path.read_bytes())
        return h.hexdigest()[:12]

    def ref(self) -> str:
        """Where clusters pull it from."""
        return f"{layout.registry_address()}/{self.name}:{self.tag()}"


def _cache() -> Path:
    return layout.cache_dir()


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    """One builder of the shared cache at a time, machine-wide: testbeds in other slots (the
    test suite's parallel workers) build the same images, rootfs and binaries into it, and two
    writers of one file or tag would tear it."""
    path = _cache() / "build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _buildah(*args: str, log: Path) -> str:
    argv = [
        "buildah",
        "--root",
        str(_cache() / "containers" / "storage"),
        "--runroot",
        str(_cache() / "containers" / "run"),
        *args,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        raise BuildError(f"image build step 'buildah {args[0]}' failed; see its log: {log}")
    return result.stdout.strip()


def pause_binary() -> Path:
    """The sandbox binary, compiled from the shipped Go source (static, a few hundred KB)."""
    src = asset("images", "pause")
    digest = hashlib.sha256((src / "main.go").read_bytes()).hexdigest()[:12]
    out = _cache() / "bin" / f"pause-{digest}" / "pause"
    if not out.exists():
        with _cache_lock():
            if not out.exists():
                _build_pause(src, digest, out)
    return out


def _build_pause(src: Path, digest: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    log = _cache() / "logs" / f"pause-{digest}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), "."],
        cwd=src,
        env={**builds._go_env(), "GOFLAGS": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise BuildError(f"building the pause binary failed; see its log: {log}")


def pause_image() -> ImageSpec:
    return ImageSpec(
        name="kubehop/pause",
        base="scratch",
        files={"/pause": pause_binary()},
        entrypoint=("/pause",),
    )


def coredns_image() -> ImageSpec:
    return ImageSpec(
        name="kubehop/coredns",
        base="scratch",
        files={"/coredns": builds.coredns().binary("coredns")},
        entrypoint=("/coredns",),
    )


def httpd_image() -> ImageSpec:
    """The small HTTP server the tests deploy."""
    return ImageSpec(
        name="kubehop/httpd",
        base="python",
        files={"/app/server.py": asset("images", "httpd", "server.py")},
        entrypoint=("python3", "-u", "/app/server.py"),
    )


def _prometheus_client_dir() -> Path:
    """The pure-Python prometheus_client package, copied into the sample images as is."""
    import prometheus_client

    return Path(prometheus_client.__file__).parent


def orc8r_image() -> ImageSpec:
    """The sample orchestrator (Magma orc8r stand-in)."""
    return ImageSpec(name="kubehop/orc8r", base="python",
                     files={"/app/orc8r.py": asset("images", "orc8r", "orc8r.py"),
                            "/app/prometheus_client": _prometheus_client_dir()},
                     entrypoint=("python3", "-u", "/app/orc8r.py"))


def agw_image() -> ImageSpec:
    """The sample access gateway: orc8r's client and kubehop's downtime probe."""
    return ImageSpec(name="kubehop/agw", base="python",
                     files={"/app/agw.py": asset("images", "agw", "agw.py"),
                            "/app/prometheus_client": _prometheus_client_dir()},
                     entrypoint=("python3", "-u", "/app/agw.py"))


def traefik_image() -> ImageSpec:
    return ImageSpec(name="kubehop/traefik", base="scratch",
                     files={"/traefik": builds.traefik().binary("traefik")},
                     entrypoint=("/traefik",))


def local_path_provisioner_image() -> ImageSpec:
    """The storage provisioner: a static binary, nothing else."""
    return ImageSpec(name="kubehop/local-path-provisioner", base="scratch",
                     files={"/local-path-provisioner":
                            builds.local_path_provisioner().binary("local-path-provisioner")},
                     entrypoint=("/local-path-provisioner",))


def volume_helper_image() -> ImageSpec:
    """What the provisioner's helper pods run its setup/teardown scripts in: ``sh``, ``mkdir``,
    ``rm`` and ``chmod`` of the Debian base the sample images share (so no extra layer)."""
    return ImageSpec(name="kubehop/volume-helper", base="python", entrypoint=("/bin/sh",))


def base_rootfs(*, log: Path, flavour: str = "python") -> Path:
    """A trimmed Debian bookworm rootfs of ``flavour``'s packages, made once by mmdebstrap and
    cached under a key of those packages (a changed list makes a new rootfs, never a stale one)."""
    packages = BASE_FLAVOURS[flavour]
    key = hashlib.sha256(json.dumps([packages, _EXCLUDES]).encode()).hexdigest()[:12]
    tar = _cache() / "rootfs" / f"{flavour}-bookworm-{key}.tar"
    if tar.exists():
        return tar
    if shutil.which("mmdebstrap") is None:
        raise BuildError("mmdebstrap is missing; install it with 'apt-get install mmdebstrap'")
    tar.parent.mkdir(parents=True, exist_ok=True)
    tmp = tar.with_suffix(".tmp")
    argv = [
        "mmdebstrap",
        "--quiet",
        "--variant=essential",
        f"--include={','.join(packages)}",
        *(f"--dpkgopt=path-exclude={e}" for e in _EXCLUDES),
        "--format=tar",
        "bookworm",
        str(tmp),
        DEBIAN_MIRROR,
    ]
    with log.open("a") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"building the Debian {flavour} rootfs failed; see its log: {log}")
    tmp.rename(tar)
    return tar


def _local_name(spec: ImageSpec) -> str:
    return f"localhost/{spec.name}:{spec.tag()}"


def _has_local(name: str, log: Path) -> bool:
    try:
        _buildah("inspect", "--type", "image", name, log=log)
    except BuildError:
        return False
    return True


def _base_image(flavour: str, log: Path) -> str:
    rootfs = base_rootfs(log=log, flavour=flavour)
    name = f"localhost/kubehop/{flavour}-base:{rootfs.stem.rsplit('-', 1)[1]}"
    if not _has_local(name, log):
        ctr = _buildah("from", "scratch", log=log)
        _buildah("add", ctr, str(rootfs), "/", log=log)
        _buildah("commit", "--rm", ctr, name, log=log)
    return name


def in_registry(spec: ImageSpec) -> bool:
    url = f"http://{layout.registry_address()}/v2/{spec.name}/manifests/{spec.tag()}"
    accept = ", ".join(
        [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ]
    )
    try:
        return httpx.head(url, headers={"Accept": accept}, timeout=5).status_code == 200
    except httpx.HTTPError as exc:
        raise TestbedError(
            f"the local registry at {layout.registry_address()} does not answer: "
            f"{exc}; is the testbed up?"
        ) from exc


def build_and_push(spec: ImageSpec) -> str:
    """Make sure the registry holds ``spec``; return the reference clusters pull."""
    if in_registry(spec):
        return spec.ref()
    with _cache_lock():
        return _build_and_push(spec)


def _build_and_push(spec: ImageSpec) -> str:
    log = _cache() / "logs" / f"image-{spec.name.replace('/', '-')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    local = _local_name(spec)
    if not _has_local(local, log):
        base = "scratch" if spec.base == "scratch" else _base_image(spec.base, log)
        ctr = _buildah("from", base, log=log)
        try:
            for dest, src in spec.files.items():
                _buildah("copy", ctr, str(src), dest, log=log)
            _buildah(
                "config",
                "--entrypoint",
                json.dumps(list(spec.entrypoint)),
                "--cmd",
                "",
                *(a for k, v in spec.env.items() for a in ("--env", f"{k}={v}")),
                ctr,
                log=log,
            )
            _buildah("commit", ctr, local, log=log)
        finally:
            subprocess.run(
                [
                    "buildah",
                    "--root",
                    str(_cache() / "containers" / "storage"),
                    "--runroot",
                    str(_cache() / "containers" / "run"),
                    "rm",
                    ctr,
                ],
                capture_output=True,
                check=False,
            )
    _buildah("push", "--tls-verify=false", local, f"docker://{spec.ref()}", log=log)
    return spec.ref()


def registry_config() -> Path:
    """Config for the local registry: our bridge address only, storage in the cache."""
    path = layout.state_dir() / "registry" / "config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = _cache() / "registry"
    storage.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {layout.registry_address()}\n"
    )
    return path


def linkprobe_image() -> ImageSpec:
    """The controller's link prober (RTT between clusters, measured from inside each)."""
    return ImageSpec(name="kubehop/linkprobe", base="python",
                     files={"/app/linkprobe.py": asset("images", "linkprobe", "linkprobe.py"),
                            "/app/prometheus_client": _prometheus_client_dir()},
                     entrypoint=("python3", "-u", "/app/linkprobe.py"))


def mover_image() -> ImageSpec:
    """The volume mover: one image for both ends of a volume copy (receiver and sender); rsync
    copies, stunnel wraps it in TLS with the migration's pre-shared key."""
    return ImageSpec(name="kubehop/mover", base="mover",
                     files={"/mover.py": asset("images", "mover", "mover.py"),
                            "/mover_tree.py": asset("images", "mover", "mover_tree.py")},
                     entrypoint=("python3", "-u", "/mover.py"))


def postgres_image() -> ImageSpec:
    """The in-cluster controller's store: Debian's PostgreSQL 15 (see its ``entry.py``)."""
    return ImageSpec(name="kubehop/postgres", base="postgres",
                     files={"/entry.py": asset("images", "postgres", "entry.py")},
                     entrypoint=("python3", "-u", "/entry.py"))


def _package_root() -> Path:
    return Path(str(resources.files("kubehop")))


def controller_site() -> Path:
    """kubehop's runtime dependencies, installed once by pip into a directory of the cache
    keyed by the dependency list (the image's Python is Debian's 3.11, the same as the
    venv's, so binary wheels fit)."""
    pyproject = _package_root().parent.parent / "pyproject.toml"
    if pyproject.exists():
        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    else:  # an installed kubehop: its own metadata lists them
        from importlib import metadata
        deps = [r for r in metadata.requires("kubehop") or [] if "extra ==" not in r]
    key = hashlib.sha256(json.dumps([sorted(deps), sys.version_info[:2]]).encode()).hexdigest()
    site = _cache() / "controller-site" / key[:12]
    if (site / ".complete").exists():
        return site
    log = _cache() / "logs" / "controller-site.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    tmp = site.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with log.open("a") as out:
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                                 "--no-compile", "--target", str(tmp), *deps],
                                stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise BuildError(f"installing kubehop's dependencies for its image failed; see {log}")
    shutil.rmtree(site, ignore_errors=True)
    tmp.rename(site)
    (site / ".complete").touch()
    return site


def controller_image() -> ImageSpec:
    """kubehop itself, for the controller that runs in a cluster: its dependencies and its
    package on Debian's Python."""
    return ImageSpec(name="kubehop/controller", base="python",
                     files={"/app/site": controller_site(), "/app/kubehop": _package_root()},
                     env={"PYTHONPATH": "/app:/app/site", "PYTHONDONTWRITEBYTECODE": "1"},
                     entrypoint=("python3", "-m", "kubehop.cli.main"))

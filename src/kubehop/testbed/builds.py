"""Build the upstream Go components once, from the Go module proxy, cached by version.

Each component is built from a tiny wrapper module written into the cache: it pins the upstream
module (and, for Kubernetes, maps every staging module to its published version, since
``k8s.io/kubernetes`` cannot be ``go install``ed). Binaries land in
``<cache>/bin/<component>-v<version>/`` and a ``.complete`` marker makes the next ``up`` skip
the build. A cold Kubernetes build takes many minutes on two cores, so the build reports which
component it is on, how far it got (packages compiled out of the total) and where its log is.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubehop.errors import BuildError, PreconditionError
from kubehop.testbed import layout

K8S_STAGING = [
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
]

Progress = Callable[[str, int, int, float, Path], None]
"""Called as ``progress(component, done, total, elapsed_seconds, log_path)``."""


@dataclass(frozen=True)
class GoComponent:
    """One upstream component and how to build it from a wrapper module."""

    name: str
    version: str
    go_mod: str
    packages: tuple[str, ...]
    ldflags: str = "-s -w"
    extra_files: dict[str, str] = field(default_factory=dict)
    module_files: tuple[tuple[str, str], ...] = ()
    """(module, path in it) copied next to the binaries, e.g. CRD manifests of that version."""

    @property
    def key(self) -> str:
        return f"{self.name}-v{self.version}"

    @property
    def bin_dir(self) -> Path:
        return layout.cache_dir() / "bin" / self.key

    @property
    def src_dir(self) -> Path:
        return layout.cache_dir() / "build" / self.key

    @property
    def log_path(self) -> Path:
        return layout.cache_dir() / "logs" / f"{self.key}.log"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def is_built(self) -> bool:
        return (self.bin_dir / ".complete").exists()


def _tools_go(packages: tuple[str, ...]) -> str:
    """A ``tools`` file importing the upstream mains, so ``go mod tidy`` records their deps."""
    imports = "\n".join(f'\t_ "{p}"' for p in packages if not p.startswith("kubehop.local/"))
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"


def kubernetes() -> GoComponent:
    """kube-apiserver, controller-manager, scheduler, kubelet, kube-proxy and kubectl."""
    v = layout.KUBERNETES_VERSION
    minor = v.split(".")[1]
    replaces = "\n".join(
        f"\tk8s.io/{s} => k8s.io/{s} v0.{minor}.{v.split('.')[2]}" for s in K8S_STAGING
    )
    go_mod = (
        "module kubehop.local/build/kubernetes\n\ngo 1.24.0\n\ngodebug default=go1.24\n\n"
        f"require k8s.io/kubernetes v{v}\n\nreplace (\n{replaces}\n)\n"
    )
    cmds = (
        "kube-apiserver",
        "kube-controller-manager",
        "kube-proxy",
        "kube-scheduler",
        "kubelet",
        "kubectl",
    )
    stamp = (
        f"-gitVersion=v{v} -gitMajor=1 -gitMinor={minor} -gitTreeState=clean -gitCommit=v{v} "
        "-buildDate=1970-01-01T00:00:00Z"
    ).split()
    xs = [
        f"-X {pkg}.{kv[1:]}"
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for kv in stamp
    ]
    return GoComponent(
        name="kubernetes",
        version=v,
        go_mod=go_mod,
        packages=tuple(f"k8s.io/kubernetes/cmd/{c}" for c in cmds),
        ldflags="-s -w " + " ".join(xs),
    )


def etcd() -> GoComponent:
    """etcd's server, from a wrapper ``main`` (its own replace lines do not apply to us)."""
    v = layout.ETCD_VERSION
    main = (
        'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    return GoComponent(
        name="etcd",
        version=v,
        go_mod=(
            "module kubehop.local/build/etcd\n\ngo 1.26.0\n\n"
            f"require go.etcd.io/etcd/server/v3 v{v}\n"
        ),
        packages=("kubehop.local/build/etcd",),
        extra_files={"main.go": main},
    )


def coredns() -> GoComponent:
    v = layout.COREDNS_VERSION
    return GoComponent(
        name="coredns",
        version=v,
        go_mod=(
            "module kubehop.local/build/coredns\n\ngo 1.25.0\n\n"
            f"require github.com/coredns/coredns v{v}\n"
        ),
        packages=("github.com/coredns/coredns",),
    )


def registry() -> GoComponent:
    v = layout.REGISTRY_VERSION
    return GoComponent(
        name="registry",
        version=v,
        go_mod=(
            "module kubehop.local/build/registry\n\ngo 1.26.0\n\n"
            f"require github.com/distribution/distribution/v3 v{v}\n"
        ),
        packages=("github.com/distribution/distribution/v3/cmd/registry",),
    )


def traefik() -> GoComponent:
    """Traefik v3.6 (3.7 adds a nested local module); its replace/exclude lines copied, since a
    dependency's own do not apply. Its CRDs and RBAC of the same version come along."""
    v = layout.TRAEFIK_VERSION
    docs = "docs/content/reference/dynamic-configuration"
    return GoComponent(
        name="traefik",
        version=v,
        go_mod=(
            "module kubehop.local/build/traefik\n\ngo 1.25.0\n\n"
            f"require github.com/traefik/traefik/v3 v{v}\n\n"
            "replace (\n"
            "\tgithub.com/abbot/go-http-auth => github.com/containous/go-http-auth "
            "v0.4.1-0.20200324110947-a37a7636d23e\n"
            "\tgithub.com/gorilla/mux => github.com/containous/mux "
            "v0.0.0-20250523120546-41b6ec3aed59\n"
            "\tgithub.com/mailgun/minheap => github.com/containous/minheap "
            "v0.0.0-20190809180810-6e71eb837595\n"
            ")\n\n"
            "exclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible\n"
        ),
        packages=("github.com/traefik/traefik/v3/cmd/traefik",),
        ldflags=f"-s -w -X github.com/traefik/traefik/v3/pkg/version.Version={v}",
        module_files=(
            ("github.com/traefik/traefik/v3", f"{docs}/kubernetes-crd-definition-v1.yml"),
            ("github.com/traefik/traefik/v3", f"{docs}/kubernetes-crd-rbac.yml"),
        ),
    )


def local_path_provisioner() -> GoComponent:
    """Rancher's local-path-provisioner, the testbed's dynamic provisioner (a host directory
    per volume, as on single-node clusters such as k3s and kind). Its module root is the main
    package; its version lives in ``main.VERSION``."""
    v = layout.LOCAL_PATH_PROVISIONER_VERSION
    module = "github.com/rancher/local-path-provisioner"
    return GoComponent(
        name="local-path-provisioner",
        version=v,
        go_mod=(
            "module kubehop.local/build/local-path-provisioner\n\ngo 1.23.0\n\n"
            f"require {module} v{v}\n"
        ),
        packages=(module,),
        ldflags=f"-s -w -X main.VERSION=v{v}",
    )


def all_components() -> list[GoComponent]:
    """Smallest first, so a broken toolchain shows up before the long Kubernetes build."""
    return [registry(), coredns(), etcd(), local_path_provisioner(), kubernetes(), traefik()]


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-mod=mod")
    return env


def _run_logged(args: list[str], *, cwd: Path, log: Path, component: GoComponent) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(args)}\n")
        out.flush()
        result = subprocess.run(
            args, cwd=cwd, env=_go_env(), stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        raise BuildError(
            f"building {component.key} failed at '{args[0]} {args[1]}' (exit {result.returncode}); "
            f"see its log: {log}"
        )


def build(component: GoComponent, *, progress: Progress | None = None) -> Path:
    """Build ``component`` unless cached; return its binary directory."""
    if component.is_built():
        return component.bin_dir
    if shutil.which("go") is None:
        raise PreconditionError("the 'go' command is missing; install Go 1.25 or newer")
    src, log = component.src_dir, component.log_path
    _write_module(component, src, log)
    _run_logged(["go", "mod", "tidy"], cwd=src, log=log, component=component)
    total = _count_packages(component, src)
    tmp = component.bin_dir.with_name(component.key + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = _go_build(component, src, tmp, log=log, progress=progress, total=total)
    _copy_module_files(component, src, tmp, log=log)
    if progress is not None:
        progress(component.key, total, total, time.monotonic() - start, log)
    shutil.rmtree(component.bin_dir, ignore_errors=True)
    tmp.rename(component.bin_dir)
    (component.bin_dir / ".complete").write_text(f"{component.key}\n")
    return component.bin_dir


def _write_module(component: GoComponent, src: Path, log: Path) -> None:
    """The Go module to build in ``src`` (go.mod, the packages' imports, extra files), and a
    fresh build log."""
    src.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"# {component.key} build started {dt.datetime.now(dt.UTC).isoformat()}\n")
    (src / "go.mod").write_text(component.go_mod)
    if component.extra_files.get("main.go") is None:
        (src / "tools.go").write_text(_tools_go(component.packages))
    for name, text in component.extra_files.items():
        (src / name).write_text(text)


def _go_build(component: GoComponent, src: Path, tmp: Path, *, log: Path,
              progress: Progress | None, total: int) -> float:
    """``go build`` of the packages into ``tmp``, its output appended to the log; reports
    progress every 2 s (packages the log names so far out of ``total``). Returns when the build
    started, for the final progress report."""
    args = [
        "go",
        "build",
        "-v",
        "-trimpath",
        "-ldflags",
        component.ldflags,
        "-o",
        f"{tmp}/",
        *component.packages,
    ]
    start = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(args)}\n")
        out.flush()
        offset = out.tell()
        proc = subprocess.Popen(args, cwd=src, env=_go_env(), stdout=out, stderr=subprocess.STDOUT)
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)  # returns the moment the build ends
                break
            if progress is not None:
                done = _count_lines_after(log, offset)
                progress(component.key, min(done, total), total, time.monotonic() - start, log)
    if proc.returncode != 0:
        raise BuildError(
            f"building {component.key} failed (exit {proc.returncode}); see its log: {log}"
        )
    return start


def _copy_module_files(component: GoComponent, src: Path, tmp: Path, *, log: Path) -> None:
    """Files the component needs from its modules' sources (``module_files``), next to its
    binaries."""
    for module, rel in component.module_files:
        found = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", module], cwd=src,
                               env=_go_env(), capture_output=True, text=True, check=False)
        source = Path(found.stdout.strip()) / rel
        if found.returncode != 0 or not source.is_file():
            raise BuildError(f"{component.key}: {module} has no file {rel}; see its log: {log}")
        shutil.copyfile(source, tmp / Path(rel).name)


def _count_packages(component: GoComponent, src: Path) -> int:
    """How many packages ``go build -v`` may print: the deps outside the standard library."""
    result = subprocess.run(
        [
            "go",
            "list",
            "-deps",
            "-f",
            "{{if not .Standard}}{{.ImportPath}}{{end}}",
            *component.packages,
        ],
        cwd=src,
        env=_go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return max(len(lines), 1)


def _count_lines_after(path: Path, offset: int) -> int:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().count(b"\n")

"""Peak memory and time of the volume mover's manifest over many small files, without Kubernetes.

Usage: python scripts/mover_manifest_mem.py [--files N] [--per-dir M] [--out FILE] [--keep]

Makes N small files (M per directory; each a different 16..80 bytes) under a fresh directory in
/tmp, then runs the mover's manifest twice, each time in a fresh Python process importing
mover.py as the image does (``/mover.py`` next to ``/mover_tree.py``, standard library only):
first cold (every file hashed), then with the hash cache the first run left (what the
verification inside the freeze does). Each run streams the whole NDJSON manifest
(``mover.manifest_lines``) to /dev/null and reports its peak RSS (``ru_maxrss``), seconds and
entries; a third process only imports mover.py, for the baseline. The files are deleted after
unless ``--keep``. Writes a report to ``--out`` (and prints it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MOVER = Path(__file__).resolve().parent.parent / "src/kubehop/testbed/assets/images/mover"

CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import mover
from mover_tree import HashCache
root, cache, mode = sys.argv[2], sys.argv[3], sys.argv[4]
start = time.monotonic()
lines = size = 0
if mode != "import":
    with open("/dev/null", "wb") as sink:
        for line in mover.manifest_lines(mover.Path(root), HashCache(mover.Path(cache))):
            sink.write(line)
            lines += 1
            size += len(line)
print(json.dumps({"seconds": round(time.monotonic() - start, 1), "lines": lines,
                  "bytes": size,
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                        1)}))
"""


def make_files(root: Path, files: int, per_dir: int) -> float:
    start = time.monotonic()
    for d in range(0, files, per_dir):
        sub = root / f"d{d // per_dir:06}"
        sub.mkdir()
        for i in range(d, min(d + per_dir, files)):
            (sub / f"f{i:08}.dat").write_bytes(f"{i:08}".encode() * (2 + i % 9))
    return time.monotonic() - start


def run(mode: str, root: Path, cache: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(MOVER), str(root), str(cache), mode],
                         capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def report(args: argparse.Namespace, made: float, runs: dict[str, dict[str, float]],
           cache_bytes: int) -> str:
    command = "python scripts/mover_manifest_mem.py " + " ".join(sys.argv[1:])
    lines = [
        f"# {command}",
        f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the start",
        f"files: {args.files} in directories of {args.per_dir}, 16..80 bytes each "
        f"(made in {made:.0f} s)",
        "mover memory limit (domain/mover.py MEMORY_LIMIT): 256Mi",
    ]
    for name, r in runs.items():
        lines.append(f"{name}: peak RSS {r['peak_rss_mib']} MiB, {r['seconds']} s, "
                     f"{r['lines']} lines, {r['bytes']} bytes of NDJSON")
    lines.append(f"hash cache file after the cold run: {cache_bytes} bytes "
                 f"({cache_bytes / max(1, args.files):.0f} bytes per file, on the workdir "
                 "emptyDir, not in memory)")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--per-dir", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mover-manifest-"))
    root, cache = base / "data", base / "hashes"
    root.mkdir()
    try:
        made = make_files(root, args.files, args.per_dir)
        runs = {"import only": run("import", root, cache),
                "cold (every file hashed)": run("walk", root, cache)}
        cache_bytes = cache.stat().st_size
        runs["warm (hash cache from the cold run)"] = run("walk", root, cache)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    text = report(args, made, runs, cache_bytes)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

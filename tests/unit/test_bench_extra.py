"""kubehop works without the ``kubehop[bench]`` extra; ``kubehop bench`` says how to get it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import assert_one_line_error


def _without_matplotlib(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with a ``matplotlib`` that cannot be imported, as when it is not installed."""
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    path = os.pathsep.join([str(shadow.parent), *sys.path])
    code = "import sys; from kubehop.cli.main import run; sys.argv[0] = 'kubehop'; run()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path}, timeout=60, check=False)


def test_cli_works_without_matplotlib(tmp_path: Path) -> None:
    result = _without_matplotlib(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    for command in ("testbed", "migrate", "bench"):
        assert command in result.stdout


def test_bench_without_matplotlib_says_to_install_the_extra(tmp_path: Path) -> None:
    result = _without_matplotlib(tmp_path, "bench", "--quick")
    assert_one_line_error(result, "matplotlib", "pip install 'kubehop[bench]'")

"""A failed upstream build is one clear error naming its log (real go command, real proxy)."""

from pathlib import Path

import pytest

from kubehop.errors import BuildError
from kubehop.testbed import builds


def test_failed_build_names_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEHOP_CACHE", str(tmp_path))
    monkeypatch.setenv("GOPROXY", "off")  # fail at once, without asking any server
    broken = builds.GoComponent(
        name="broken",
        version="0.0.1",
        go_mod=(
            "module kubehop.local/build/broken\n\ngo 1.22\n\n"
            "require example.invalid/nope v0.0.1\n"
        ),
        packages=("example.invalid/nope",),
    )
    with pytest.raises(BuildError) as info:
        builds.build(broken)
    message = str(info.value)
    assert "broken-v0.0.1" in message
    assert str(tmp_path / "logs" / "broken-v0.0.1.log") in message
    assert (tmp_path / "logs" / "broken-v0.0.1.log").exists()
    assert not broken.is_built()

"""Bad input and a wrong environment get a one-line error and change nothing."""

from __future__ import annotations

import pytest

from kubehop.testbed import testbed as tb
from tests.conftest import assert_one_line_error, kubehop

pytestmark = pytest.mark.usefixtures("testbed")


@pytest.mark.parametrize(
    ("clusters", "fragment"),
    [("Edge!", "not valid"), ("edge,edge", "repeat"), ("", "no cluster names")],
)
def test_bad_cluster_names(clusters: str, fragment: str) -> None:
    result = kubehop("testbed", "up", "--clusters", clusters)
    assert_one_line_error(result, fragment)
    assert result.returncode == 2


def test_other_cluster_set_while_up_is_refused_and_changes_nothing() -> None:
    before = tb.status()
    result = kubehop("testbed", "up", "--clusters", "edge,fog")
    assert_one_line_error(result, "kubehop testbed down")
    after = tb.status()
    assert after.healthy
    assert [c.name for c in after.clusters] == [c.name for c in before.clusters]


def test_not_root_is_refused() -> None:
    result = kubehop("testbed", "up", user="65534")
    assert_one_line_error(result, "needs root")
    assert tb.status().healthy


def test_status_as_json_is_parseable_even_when_piped() -> None:
    result = kubehop("testbed", "status", "-o", "json")
    assert result.returncode == 0
    assert result.stdout.lstrip().startswith("{")

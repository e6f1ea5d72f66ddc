"""The real testbed for integration tests: brought up once per session, torn down at the end if
this session started it (a testbed that was already up is reused and left running)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubehop.testbed import layout
from kubehop.testbed import testbed as tb

CLUSTERS = ("edge", "fog", "cloud")
"""The paper's three tiers (the controller's tests need all three; the migration tests use edge
and cloud, with fog as a third cluster that must be left alone)."""
BY_NAME = {c.name: c for c in layout.layouts(CLUSTERS)}


@pytest.fixture(scope="session")
def testbed() -> Iterator[tb.Status]:
    # Running is enough to reuse it: ``up`` installs what a testbed made by an older kubehop
    # lacks (storage), where "healthy" would count it as broken and rebuild it.
    was_up = tb.recorded_clusters() == CLUSTERS and tb.status().running
    if not was_up and tb.recorded_clusters():
        tb.down()
    tb.up(CLUSTERS, say=print)  # on a healthy testbed: only the sample images, if new
    st = tb.status()
    assert st.healthy, st.to_dict()
    yield st
    if not was_up:
        tb.down()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/testbed/" in str(item.fspath):
            item.add_marker(pytest.mark.testbed)

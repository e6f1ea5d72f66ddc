"""WAN profiles: parsing, validation and the cluster-pair table (pure logic, no root)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubehop.errors import UsageError
from kubehop.testbed import wanprofile as wp
from kubehop.testbed.layout import MAX_CLUSTERS


@pytest.mark.parametrize(("text", "ms"), [
    ("5ms", 5.0), ("1.5ms", 1.5), ("500us", 0.5), ("0.02s", 20.0), ("0", 0.0), (" 30 ms ", 30.0),
    ("2MS", 2.0), (0, 0.0),
])
def test_delay_parses_to_milliseconds(text: str, ms: float) -> None:
    assert wp.parse_delay(text) == pytest.approx(ms)


@pytest.mark.parametrize(("text", "fragment"), [
    ("-5ms", "negative"), ("5", "not a duration"), ("fast", "not a duration"), ("5 m s", "not"),
    ("20s", "over"), ("", "not a duration"),
])
def test_bad_delay_is_a_one_line_usage_error(text: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment) as info:
        wp.parse_delay(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "bits"), [
    ("100mbit", 100_000_000), ("1gbit", 10**9), ("500kbit", 500_000), ("1.5Mbit", 1_500_000),
    ("unlimited", None), ("none", None),
])
def test_rate_parses_to_bits_per_second(text: str, bits: int | None) -> None:
    assert wp.parse_rate(text) == bits


@pytest.mark.parametrize("text", ["100", "100mbps", "fast", "-1mbit", "1kbit", "mbit"])
def test_bad_rate_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="rate"):
        wp.parse_rate(text)


@given(st.integers(min_value=8, max_value=10**7), st.sampled_from(["kbit", "mbit", "gbit"]))
def test_rate_formats_back_to_what_parses(value: int, unit: str) -> None:
    bits = wp.parse_rate(f"{value}{unit}")
    assert wp.parse_rate(wp.format_rate(bits)) == bits


def test_default_profile_is_the_issue_tiers() -> None:
    table = wp.link_table(wp.DEFAULT, ("edge", "fog", "cloud"))
    assert {k: v.delay_ms for k, v in table.items()} == {
        ("edge", "fog"): 5.0, ("edge", "cloud"): 20.0, ("fog", "cloud"): 15.0}
    assert {k: v.rtt_ms for k, v in table.items()} == {
        ("edge", "fog"): 10.0, ("edge", "cloud"): 40.0, ("fog", "cloud"): 30.0}
    assert all(v.rate_bit == 10**9 for v in table.values())


def test_pairs_of_the_session_testbed() -> None:
    assert wp.link_table(wp.DEFAULT, ("edge", "cloud")) == {
        ("edge", "cloud"): wp.Link(delay_ms=20.0, rate_bit=10**9)}


def test_flat_profile_shapes_nothing() -> None:
    table = wp.link_table(wp.FLAT, ("edge", "fog", "cloud"))
    assert not any(link.shaped for link in table.values())


def test_clusters_take_their_tier_and_same_tier_pairs_are_flat() -> None:
    # "site2" is not a tier name, so it stands for an edge cluster.
    table = wp.link_table(wp.DEFAULT, ("edge", "site2", "cloud"))
    assert table[("edge", "site2")] == wp.Link()
    assert table[("site2", "cloud")].delay_ms == 20.0


def test_cluster_link_wins_over_tier_link() -> None:
    profile = wp.DEFAULT.with_link("site2", "cloud", delay_ms=50.0)
    table = wp.link_table(profile, ("edge", "site2", "cloud"))
    assert table[("site2", "cloud")] == wp.Link(delay_ms=50.0, rate_bit=10**9)
    assert table[("edge", "cloud")].delay_ms == 20.0


def test_with_link_keeps_fields_not_given() -> None:
    changed = wp.DEFAULT.with_link("cloud", "edge", rate_bit=100_000_000)
    link = changed.link_between("edge", "cloud")
    assert link == wp.Link(delay_ms=20.0, rate_bit=100_000_000)
    again = changed.with_link("edge", "cloud", delay_ms=30.0)
    assert again.link_between("cloud", "edge") == wp.Link(delay_ms=30.0, rate_bit=100_000_000)
    assert again.with_link("edge", "cloud", rate_bit=None).link_between(
        "edge", "cloud").rate_bit is None
    assert wp.DEFAULT.link_between("edge", "cloud").delay_ms == 20.0, "profiles are immutable"


def test_jitter_larger_than_delay_is_refused() -> None:
    with pytest.raises(UsageError, match="jitter"):
        wp.DEFAULT.with_link("edge", "cloud", delay_ms=1.0, jitter_ms=2.0)


def test_profile_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "far.yaml"
    path.write_text("""
links:
  - between: [edge, cloud]
    delay: 30ms
    jitter: 2ms
    rate: 100mbit
  - between: [fog, edge]
    delay: 1ms
""")
    profile = wp.load_profile(str(path))
    assert profile.name == "far"
    assert profile.link_between("cloud", "edge") == wp.Link(30.0, 2.0, 100_000_000)
    assert profile.link_between("edge", "fog") == wp.Link(1.0, 0.0, None)
    assert wp.profile_from_dict(profile.to_dict(), "again") == profile


@pytest.mark.parametrize(("text", "fragment"), [
    ("links: [{between: [edge], delay: 5ms}]", "two tiers"),
    ("links: [{between: [edge, cloud], delay: -5ms}]", "negative"),
    ("links: [{between: [edge, cloud], rate: fast}]", "rate"),
    ("links: [{between: [edge, cloud], colour: red}]", "only between"),
    ("links: [{between: [edge, cloud]}, {between: [cloud, edge]}]", "twice"),
    ("links: {edge: cloud}", "list"),
    ("- just a list", "mapping"),
    ("links: [{between: [edge, cloud]", "YAML"),
])
def test_bad_profile_file_is_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=fragment) as info:
        wp.load_profile(str(path))
    assert "\n" not in str(info.value)


def test_missing_profile_names_the_builtins() -> None:
    with pytest.raises(UsageError, match="default nor flat"):
        wp.load_profile("/nonexistent/wan.yaml")


def test_endpoints_must_be_tiers_or_clusters() -> None:
    wp.check_endpoints(wp.DEFAULT, ("edge", "cloud"))  # fog is a tier: fine without a fog
    wp.check_endpoint("site2", ("edge", "site2"))
    with pytest.raises(UsageError, match="neither a tier"):
        wp.check_endpoint("mars", ("edge", "cloud"))


def test_queue_numbers_are_distinct_per_direction() -> None:
    numbers = {wp.queue_number(s, d) for s in range(MAX_CLUSTERS) for d in range(MAX_CLUSTERS)}
    assert len(numbers) == MAX_CLUSTERS**2
    assert wp.queue_number(0, 1) != wp.queue_number(1, 0)
    with pytest.raises(ValueError, match="range"):
        wp.queue_number(MAX_CLUSTERS, 0)


def test_burst_holds_a_gso_packet_and_two_ms() -> None:
    assert wp.burst_bytes(50_000_000) == 65536
    assert wp.burst_bytes(10**9) == 250_000


def test_chain_rules_delay_and_limit_each_direction() -> None:
    from kubehop.testbed import wan
    from kubehop.testbed.layout import layouts

    edge, cloud = layouts(("edge", "cloud"))
    link = wp.Link(delay_ms=20.0, rate_bit=10**9)
    rules = wan.chain_rules([(edge, cloud, link), (cloud, edge, link)])
    # Written for slot 0; a test worker on another slot sees its own chain, veths and tag.
    from kubehop.testbed import layout

    rules = [r.replace(wan.CHAIN, "KUBEHOP-WAN").replace(wan.TAG, "kubehop-testbed-wan")
             .replace(layout.LINK_PREFIXES[0], "khv-") for r in rules]
    assert rules == [
        "-A KUBEHOP-WAN -m physdev --physdev-in khv-edge --physdev-out khv-cloud "
        "-m comment --comment kubehop-testbed-wan -j CLASSIFY --set-class 1:a",
        "-A KUBEHOP-WAN -m physdev --physdev-in khv-edge --physdev-out khv-cloud "
        f"-m comment --comment kubehop-testbed-wan -j NFQUEUE --queue-num {wp.QUEUE_BASE + 1}",
        "-A KUBEHOP-WAN -m physdev --physdev-in khv-cloud --physdev-out khv-edge "
        "-m comment --comment kubehop-testbed-wan -j CLASSIFY --set-class 1:b",
        "-A KUBEHOP-WAN -m physdev --physdev-in khv-cloud --physdev-out khv-edge "
        f"-m comment --comment kubehop-testbed-wan -j NFQUEUE --queue-num "
        f"{wp.QUEUE_BASE + MAX_CLUSTERS}",
    ]
    assert wan.chain_rules([(edge, cloud, wp.Link()), (cloud, edge, wp.Link())]) == []


def _packet_notice(queue: int, packet_id: int) -> bytes:
    """An nfnetlink_queue packet notice as the kernel sends it (metadata only)."""
    import struct

    from kubehop.testbed import wandelay as wd

    attrs = wd._attr(wd.NFQA_PACKET_HDR, struct.pack("!IHB", packet_id, 0x0800, 2))
    return wd._message(wd.NFQNL_MSG_PACKET, queue, attrs, flags=0)


class _Sent:
    """Stands in for the netlink socket: keeps what the delayer sends."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.messages.append(data)
        return len(data)


def _verdicts(sent: _Sent) -> list[tuple[int, int]]:
    """(queue, accepted up to id) of every batch verdict sent."""
    import struct

    out = []
    for msg in sent.messages:
        queue = struct.unpack_from("!H", msg, 16 + 2)[0]
        verdict, packet_id = struct.unpack_from("!II", msg, 16 + 4 + 4)
        assert verdict == 1  # NF_ACCEPT
        out.append((queue, packet_id))
    return out


def test_delayer_releases_each_queue_in_order_after_its_delay(tmp_path: Path) -> None:
    from typing import Any, cast

    from kubehop.testbed import wandelay as wd

    sent = _Sent()
    d = wd.Delayer(tmp_path / "c.json", tmp_path / "s.json", sock=cast(Any, sent))
    d.delays = {27001: (0.020, 0.0), 27008: (0.005, 0.0)}
    for queue, packet_id, at in ((27001, 1, 0.0), (27001, 2, 0.001), (27008, 7, 0.001)):
        notice = _packet_notice(queue, packet_id)
        d._enqueue(memoryview(notice), 0, len(notice), now=100.0 + at)
    d.release(27001, 100.015)
    d.release(27008, 100.006)
    assert _verdicts(sent) == [(27008, 7)]  # 27001's packets are not due yet
    d.release(27001, 100.0205)
    assert _verdicts(sent)[-1] == (27001, 1)
    d.release(27001, 100.030)
    assert _verdicts(sent)[-1] == (27001, 2)
    assert d.counters["packets"] == 3


def test_delayer_jitter_never_reorders(tmp_path: Path) -> None:
    from typing import Any, cast

    from kubehop.testbed import wandelay as wd

    d = wd.Delayer(tmp_path / "c.json", tmp_path / "s.json", sock=cast(Any, _Sent()))
    d.delays = {27001: (0.010, 0.010)}
    for i in range(2000):
        notice = _packet_notice(27001, i)
        d._enqueue(memoryview(notice), 0, len(notice), now=i * 0.0005)
    dues = [due for due, _ in d.held[27001]]
    assert dues == sorted(dues)
    extra = [due - i * 0.0005 for i, due in enumerate(dues)]
    assert min(extra) >= 0.0 and max(extra) <= 0.020 + 1e-9
    assert 0.007 < sum(extra) / len(extra) < 0.013, "the mean delay stays near the configured"

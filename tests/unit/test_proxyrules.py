# ruff: noqa: E501  (the rules are real kube-proxy lines, kept whole)
"""Reading what kube-proxy (iptables mode) has programmed for a Service from its rules."""

from __future__ import annotations

from kubehop.domain.proxyrules import programmed_endpoints

RULES = '''*nat
:KUBE-SVC-UJ7T2GZ4RR2NGOFI - [0:0]
-A KUBE-SERVICES -d 10.100.89.41/32 -p tcp -m comment --comment "orc8r-ns/orc8r:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-UJ7T2GZ4RR2NGOFI
-A KUBE-SEP-QUAIOTC5KUSLJRWR -p tcp -m comment --comment "orc8r-ns/orc8r:http" -m tcp -j DNAT --to-destination 10.200.0.4:8080
-A KUBE-SVC-UJ7T2GZ4RR2NGOFI ! -s 10.200.0.0/16 -d 10.100.89.41/32 -p tcp -m comment --comment "orc8r-ns/orc8r:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-UJ7T2GZ4RR2NGOFI -m comment --comment "orc8r-ns/orc8r:http -> 10.200.0.4:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-QUAIOTC5KUSLJRWR
-A KUBE-SVC-UJ7T2GZ4RR2NGOFI -m comment --comment "orc8r-ns/orc8r:http -> 10.250.0.13:80" -j KUBE-SEP-QVJRGLXMMNOFROHR
-A KUBE-SVC-AAAA -m comment --comment "orc8r-ns/orc8r-other:http -> 10.200.0.9:8080" -j KUBE-SEP-B
-A KUBE-SVC-CCCC -m comment --comment "other/orc8r:http -> 10.200.0.7:8080" -j KUBE-SEP-C
-A KUBE-SVC-DDDD -m comment --comment "orc8r-ns/orc8r:grpc -> 10.200.0.4:9090" -j KUBE-SEP-D
-A KUBE-SVC-EEEE -m comment --comment "plain/web -> 10.200.0.8:80" -j KUBE-SEP-E
COMMIT
'''


def test_each_port_lists_its_programmed_destinations_and_nothing_of_other_services() -> None:
    assert programmed_endpoints(RULES, "orc8r-ns", "orc8r") == {
        "http": {"10.200.0.4:8080", "10.250.0.13:80"}, "grpc": {"10.200.0.4:9090"}}


def test_an_unnamed_port_and_a_service_without_endpoints() -> None:
    assert programmed_endpoints(RULES, "plain", "web") == {"": {"10.200.0.8:80"}}
    assert programmed_endpoints(RULES, "orc8r-ns", "missing") == {}
    assert programmed_endpoints("", "orc8r-ns", "orc8r") == {}

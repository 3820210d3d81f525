"""One helper writes ``host:port`` and base URLs; Python's own URL parser is the judge that the host
and port read back as written, for IPv4, IPv6 (with and without a zone id) and names."""

import ipaddress
from urllib.parse import urlsplit

from hypothesis import given, strategies as st

from sparkkit.inventory.address import host_port, http_url, is_ipv6

PORTS = st.integers(min_value=1, max_value=65535)
NAMES = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}\Z")


@given(st.ip_addresses(v=6), PORTS)
def test_an_ipv6_address_is_bracketed_and_reads_back(addr, port):
    url = urlsplit(http_url(str(addr), port))
    assert url.scheme == "http" and ipaddress.ip_address(url.hostname) == addr and url.port == port
    assert host_port(str(addr), port) == f"[{addr}]:{port}"


@given(st.one_of(st.ip_addresses(v=4).map(str), NAMES), PORTS)
def test_ipv4_addresses_and_names_are_written_as_they_are(host, port):
    assert host_port(host, port) == f"{host}:{port}" and not is_ipv6(host)
    url = urlsplit(http_url(host, port))
    assert url.hostname == host.lower() and url.port == port


def test_a_zone_id_is_kept_and_escaped_in_urls():
    assert host_port("fe80::1%eth0", 8000) == "[fe80::1%eth0]:8000"
    assert http_url("fe80::1%eth0", 8000) == "http://[fe80::1%25eth0]:8000"
    assert http_url("::1", 8000) == "http://[::1]:8000"
    assert host_port("[::1]", 22) == "[::1]:22"  # already bracketed: left alone

"""SSRF corpus: every URL here must be refused."""

from __future__ import annotations

import pytest

from driftline.alerting.ssrf import UnsafeURLError, check_url, parse_ip


def fake_dns(table):
    def resolve(host, port):
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]
    return resolve


DNS = fake_dns({
    "metadata.google.internal": ["169.254.169.254"],
    "localhost": ["127.0.0.1", "::1"],
    "internal.corp.example": ["10.0.0.7"],
    "rebind.example": ["93.184.216.34", "192.168.0.1"],  # one public, one private: refused
    "meta-alias.example": ["169.254.169.254"],
    "v6-mapped.example": ["::ffff:127.0.0.1"],
    "hooks.slack.com": ["52.1.2.3"],
})

CORPUS = [
    "https://169.254.169.254/latest/meta-data/",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://meta-alias.example/",
    "https://127.0.0.1/",
    "https://127.1/",
    "https://localhost/",
    "https://10.1.2.3/",
    "https://internal.corp.example/hook",
    "https://172.16.0.1/",
    "https://172.31.255.254/",
    "https://192.168.1.1/",
    "https://rebind.example/",
    "https://2130706433/",           # decimal 127.0.0.1
    "https://0x7f000001/",           # hex
    "https://0177.0.0.1/",           # octal
    "https://0xA9.0xFE.0xA9.0xFE/",  # hex 169.254.169.254
    "https://[::1]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:169.254.169.254]/",
    "https://[::ffff:a9fe:a9fe]/",
    "https://[64:ff9b::a9fe:a9fe]/",  # NAT64 form of the metadata address
    "https://[fe80::1]/",
    "https://[fc00::1]/",
    "https://0.0.0.0/",
    "https://100.64.0.1/",
    "https://v6-mapped.example/",
    "http://hooks.slack.com/services/x",  # plain http
    "ftp://hooks.slack.com/",
    "https://user:pw@hooks.slack.com/",
    "https://unknown-host.invalid/",
]


@pytest.mark.parametrize("url", CORPUS)
def test_corpus_refused(url):
    with pytest.raises(UnsafeURLError):
        check_url(url, resolver=DNS)


def test_decimal_ip_over_http_refused_even_in_local_dev_for_metadata():
    with pytest.raises(UnsafeURLError):
        check_url("http://2852039166/", allow_local=True, resolver=DNS)  # 169.254.169.254
    with pytest.raises(UnsafeURLError):
        check_url("http://metadata.google.internal/", allow_local=True, resolver=DNS)


def test_public_https_allowed_and_pinned():
    t = check_url("https://hooks.slack.com/services/T/B/x?a=1", resolver=DNS)
    assert (t.host, t.port, t.address, t.path) == ("hooks.slack.com", 443, "52.1.2.3",
                                                   "/services/T/B/x?a=1")


def test_local_development_allows_loopback_http():
    t = check_url("http://127.0.0.1:8080/h", allow_local=True, resolver=DNS)
    assert t.address == "127.0.0.1"
    assert check_url("http://localhost:1/", allow_local=True, resolver=DNS).port == 1


def test_real_resolver_localhost_refused():
    with pytest.raises(UnsafeURLError):
        check_url("https://localhost/")


def test_error_message_hides_path():
    with pytest.raises(UnsafeURLError) as e:
        check_url("http://hooks.slack.com/services/T/B/SECRET", resolver=DNS)
    assert "SECRET" not in str(e.value)


@pytest.mark.parametrize("text,expected", [("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"),
                                           ("10.1", "10.0.0.1"), ("0300.0250.1.1", "192.168.1.1"),
                                           ("example.com", None), ("1.2.3.256", None)])
def test_parse_ip_inet_aton_forms(text, expected):
    ip = parse_ip(text)
    assert (None if ip is None else str(ip)) == expected

"""Where a callback may go: public http(s) addresses only, with a resolver the tests control.
The check at send time is tested with the worker's sender (tests/unit/worker)."""

import pytest

from common.callback_targets import CallbackTarget, check_callback_url, forbidden_kind
from common.errors import CallbackRefusedError, InvalidFieldError
from common.settings import Settings

PUBLIC = "93.184.215.14"
SETTINGS = Settings(_env_file=None, environment="test")  # type: ignore[call-arg]


def resolving_to(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: list(addresses)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1:9000/hook", "127.0.0.1"),
        ("http://[::1]/hook", "::1"),
        ("http://10.0.0.1/hook", "10.0.0.1"),
        ("http://172.16.3.4/hook", "172.16.3.4"),
        ("http://192.168.1.10/hook", "192.168.1.10"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("http://[fd00::1]/hook", "fd00::1"),
        ("http://[fe80::1]/hook", "fe80::1"),
        ("http://224.0.0.1/hook", "224.0.0.1"),
        ("http://0.0.0.0/hook", "0.0.0.0"),
        ("http://[::ffff:127.0.0.1]/hook", "::ffff:127.0.0.1"),
        ("http://loopy.example.org/hook", "127.0.0.1"),  # a public name resolving inside
    ],
)
def test_a_callback_to_an_inside_address_is_refused(url: str, address: str) -> None:
    with pytest.raises(CallbackRefusedError, match="public addresses"):
        check_callback_url(url, SETTINGS, resolving_to(address))


@pytest.mark.parametrize("host", ["mlflow", "redis", "grafana", "localhost", "MLflow."])
def test_a_compose_service_name_is_refused_whatever_it_resolves_to(host: str) -> None:
    with pytest.raises(CallbackRefusedError, match="inside this deployment"):
        check_callback_url(f"http://{host}:5000/api", SETTINGS, resolving_to(PUBLIC))


def test_a_public_address_is_accepted_and_an_allowed_internal_name_too() -> None:
    target = check_callback_url(" https://hooks.example.org/x?y=1 ", SETTINGS, resolving_to(PUBLIC))
    assert (target.url, target.host, target.port, target.addresses) == (
        "https://hooks.example.org/x?y=1",
        "hooks.example.org",
        443,
        [PUBLIC],
    )
    allowed = Settings(_env_file=None, callback_allowed_hosts=["receiver.internal"])  # type: ignore[call-arg]
    check_callback_url("http://receiver.internal/h", allowed, resolving_to("10.1.2.3"))


def test_plain_http_is_refused_in_production() -> None:
    prod = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="prod",
        callback_secret="a-real-secret-of-some-length",
        flower_basic_auth="ops:a-real-password",
    )
    with pytest.raises(CallbackRefusedError, match="https"):
        check_callback_url("http://hooks.example.org/x", prod, resolving_to(PUBLIC))
    check_callback_url("https://hooks.example.org/x", prod, resolving_to(PUBLIC))


@pytest.mark.parametrize(
    "bad", ["file:///etc/passwd", "hooks.example.org", "ftp://x/y", "http://", "http://h:99999/"]
)
def test_a_callback_url_must_be_absolute_http(bad: str) -> None:
    with pytest.raises(InvalidFieldError):
        check_callback_url(bad, SETTINGS, resolving_to(PUBLIC))


def test_an_unresolvable_host_is_refused() -> None:
    def fails(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(CallbackRefusedError, match="does not resolve"):
        check_callback_url("https://nowhere.example/x", SETTINGS, fails)


def test_address_kinds() -> None:
    assert forbidden_kind(PUBLIC) is None
    assert forbidden_kind("2606:4700::1111") is None
    assert forbidden_kind("169.254.169.254") == "link-local"
    assert forbidden_kind("::ffff:10.0.0.1") == "private"


def test_a_pinned_request_keeps_the_host_name_for_the_host_header() -> None:
    target = CallbackTarget(
        "https://h.example.org:8443/a?b=1", "https", "h.example.org", 8443, [PUBLIC]
    )
    assert target.pinned_url(PUBLIC) == f"https://{PUBLIC}:8443/a?b=1"
    assert target.pinned_url("2606:4700::1") == "https://[2606:4700::1]:8443/a?b=1"
    assert target.host_header == "h.example.org:8443"

"""Secure Kafka without a broker: the SASL_SSL listener's properties, SCRAM user arguments,
and how kafka-python's connection failures become one config error naming the key."""

from __future__ import annotations

import logging
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka import errors as Errors
from kafka.net.connection import KafkaConnection

from hub.config import KafkaConfig
from hub.embedded import EmbeddedKafka, KafkaSecurity
from hub.errors import ConfigError, FatalError
from hub.kafka import KafkaSecurityError, _FailureWatch, security_failure


def _secure(**overrides) -> KafkaConfig:
    values = {
        "bootstrap_servers": "kafka-1:9093",
        "topic_prefix": "hub",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "hub",
        "sasl_plain_password": "pw",
        "ssl_cafile": "/etc/hub/ca.pem",
    }
    return KafkaConfig(**values | overrides)


def _security(tmp_path, **users) -> KafkaSecurity:
    (tmp_path / "s.crt").write_text("-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n")
    (tmp_path / "s.key").write_text("-----BEGIN PRIVATE KEY-----\nBB\n-----END PRIVATE KEY-----\n")
    return KafkaSecurity(tmp_path / "s.crt", tmp_path / "s.key", users or {"hub": "pw"})


def test_a_secure_broker_listens_sasl_ssl_for_clients_and_plaintext_for_itself(tmp_path):
    kafka = EmbeddedKafka(
        tmp_path / "k", port=9101, controller_port=9102, internal_port=9103,
        security=_security(tmp_path),
    )  # fmt: skip
    props = kafka.properties()
    assert props["listeners"] == (
        "SASL_SSL://127.0.0.1:9101,INTERNAL://127.0.0.1:9103,CONTROLLER://127.0.0.1:9102"
    )
    assert props["listener.security.protocol.map"] == (
        "SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
    )
    assert props["inter.broker.listener.name"] == "INTERNAL"
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert (
        "ScramLoginModule required"
        in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    )
    assert props["listener.name.sasl_ssl.ssl.keystore.type"] == "PEM"
    assert kafka.bootstrap == "127.0.0.1:9101" and kafka.plaintext_bootstrap == "127.0.0.1:9103"
    # Without ``security`` nothing changes: one PLAINTEXT listener, which is the bootstrap.
    plain = EmbeddedKafka(tmp_path / "p", port=9201, controller_port=9202)
    assert plain.properties()["listeners"] == (
        "PLAINTEXT://127.0.0.1:9201,CONTROLLER://127.0.0.1:9202"
    )
    assert plain.plaintext_bootstrap == plain.bootstrap


def test_the_keystore_is_the_key_then_the_chain(tmp_path):
    pem = _security(tmp_path).keystore_pem()
    assert pem.index("PRIVATE KEY") < pem.index("CERTIFICATE") and pem.endswith("\n")


def test_scram_users_become_storage_tool_arguments(tmp_path):
    sec = _security(tmp_path, hub="s3cret", admin="x-y_z")
    assert sec.scram_args() == [
        "--add-scram", "SCRAM-SHA-512=[name=hub,password=s3cret]",
        "--add-scram", "SCRAM-SHA-512=[name=admin,password=x-y_z]",
    ]  # fmt: skip


@pytest.mark.parametrize("bad", ["a,b", "a=b", "[a]", 'a"b', "a\nb", " a", ""])
def test_a_user_the_storage_tool_cannot_take_is_refused(tmp_path, bad):
    with pytest.raises(FatalError, match="KafkaSecurity.users"):
        _security(tmp_path, **{"hub": bad})
    with pytest.raises(FatalError, match="KafkaSecurity.users"):
        KafkaSecurity(tmp_path / "c", tmp_path / "k", {bad: "pw"})


def test_only_scram_mechanisms_are_offered(tmp_path):
    with pytest.raises(FatalError, match="mechanism"):
        KafkaSecurity(tmp_path / "c", tmp_path / "k", {"hub": "pw"}, mechanism="PLAIN")


def _cert_error(message: str) -> Errors.KafkaConnectionError:
    """kafka-python's handshake failure, raised from the ssl module's error as it does."""
    verify = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    verify.verify_message = message
    try:
        try:
            raise verify
        except ssl.SSLError as e:
            raise Errors.KafkaConnectionError(f"Handshake failed: {e}") from None
    except Errors.KafkaConnectionError as exc:
        exc.__context__ = verify
        return exc


SECRET = "\u00a7\u00b6"  # in every generated password, in no user or host name


@given(
    user=st.text(st.characters(exclude_characters=SECRET), min_size=1, max_size=30),
    password=st.text(max_size=20).map(lambda t: SECRET + t),
    hosts=st.lists(
        st.tuples(st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True), st.integers(1, 65535)),
        min_size=1,
        max_size=3,
    ).map(lambda hs: ",".join(f"{h}:{p}" for h, p in hs)),
)
def test_refused_credentials_name_the_password_key_in_one_line_without_the_password(
    user, password, hosts
):
    kafka = _secure(sasl_plain_username=user, sasl_plain_password=password,
                    bootstrap_servers=hosts)  # fmt: skip
    err = security_failure(Errors.SaslAuthenticationFailedError("invalid credentials"), kafka)
    assert isinstance(err, KafkaSecurityError) and isinstance(err, ConfigError)
    assert err.key == "kafka.sasl_plain_password"
    assert str(err).startswith("kafka.sasl_plain_password: ")
    assert len(str(err).splitlines()) == 1
    assert SECRET not in str(err)


def test_an_unverified_certificate_names_the_ca_file():
    err = security_failure(_cert_error("unable to get local issuer certificate"), _secure())
    assert err is not None and err.key == "kafka.ssl_cafile"
    assert "/etc/hub/ca.pem" in str(err) and "unable to get local issuer certificate" in str(err)


def test_a_certificate_for_another_host_names_the_bootstrap_servers():
    err = security_failure(
        _cert_error("Hostname mismatch, certificate is not valid for 'kafka-1'."), _secure()
    )
    assert err is not None and err.key == "kafka.bootstrap_servers"


@pytest.mark.parametrize(
    "exc",
    [
        Errors.KafkaConnectionError("111 ECONNREFUSED"),
        Errors.KafkaConnectionError("socket disconnected"),
        Errors.KafkaTimeoutError("Unable to bootstrap"),
        OSError("no route to host"),
    ],
)
def test_an_unreachable_broker_is_no_config_error(exc):
    assert security_failure(exc, _secure()) is None


def _conn(broker_version_data) -> KafkaConnection:
    """A KafkaConnection as a log record carries it, past ApiVersions or not (no socket)."""
    conn = KafkaConnection.__new__(KafkaConnection)
    conn.broker_version_data = broker_version_data
    return conn


def _record(name: str, msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_the_watch_holds_records_and_releases_them_unchanged():
    got: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            got.append(record)

    logger = logging.getLogger("kafka.net.manager")
    handler = Keep()
    logger.addHandler(handler)
    try:
        with _FailureWatch(_secure()) as watch:
            logger.error("Connection failed: %s", Errors.KafkaConnectionError("111 ECONNREFUSED"))
        assert got == [] and watch.verdict() is None
        watch.release()
        assert [r.getMessage() for r in got] == [
            "Connection failed: KafkaConnectionError: 111 ECONNREFUSED"
        ]
        logger.error("after the watch")  # the filter is gone
        assert got[-1].getMessage() == "after the watch"
    finally:
        logger.removeHandler(handler)


def test_the_watch_sees_a_refusal_among_the_records():
    watch = _FailureWatch(_secure())
    assert not watch.filter(
        _record("kafka.net.manager", "failed: %s", Errors.KafkaConnectionError("x"))
    )
    assert watch.verdict() is None
    watch.filter(_record("kafka.net.manager", "failed: %s",
                         Errors.SaslAuthenticationFailedError("bad")))  # fmt: skip
    assert watch.verdict().key == "kafka.sasl_plain_password"


def test_connections_lost_in_the_sasl_exchange_count_as_refused_credentials():
    """kafka-python may lose the broker's refusal to the socket's close (see _FailureWatch)."""
    lost = Errors.KafkaConnectionError("socket disconnected")
    watch = _FailureWatch(_secure())
    watch.filter(_record("kafka.net.connection", "%s: lost: %s", _conn(object()), lost))
    assert watch.verdict() is None  # once could be anything
    watch.filter(_record("kafka.net.connection", "%s: lost: %s", _conn(object()), lost))
    assert watch.verdict().key == "kafka.sasl_plain_password"
    # A connection that never got an answer (refused, TLS) means the broker is not there.
    watch.filter(_record("kafka.net.connection", "%s: lost: %s", _conn(None), lost))
    assert watch.verdict() is None
    # Without SASL a lost connection says nothing about a password.
    plain_tls = _FailureWatch(_secure(security_protocol="SSL"))
    for _ in range(3):
        plain_tls.filter(_record("kafka.net.connection", "%s: lost: %s", _conn(object()), lost))
    assert plain_tls.verdict() is None

"""What every kafka-python client of ours shares: bootstrap and close timeouts, the check of
pass-through client settings, which settings each kind of client takes, and our errors.
Importing it loads no kafka-python (the sinks' wiring reads it for every daemon).

Client settings (``security_protocol``, ``ssl_*``, ``sasl_*``, ``client_id``, timeouts...) are
kafka-python's keyword names, passed through unchanged; settings that a client sets itself are
refused with a :class:`ValueError` that names them.

>>> check_settings({"client_id": "a"}, frozenset({"group_id"}), "KafkaSource")
{'client_id': 'a'}
>>> shared_settings({"client_id": "a", "max_poll_records": 5}), producer_settings({"max_poll_records": 5})
({'client_id': 'a'}, {})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

# Bootstrapping is a metadata round trip; 30 s is kafka-python's default and fails a wrong
# address with a clear error instead of hanging.
BOOTSTRAP_TIMEOUT_S = 30.0
# close() leaves the group (so the other members rebalance at once) and then gives up.
CLOSE_TIMEOUT_S = 10.0

SHARED_SETTINGS = frozenset(
    {
        "client_id",
        "security_protocol",
        "ssl_context",
        "ssl_check_hostname",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_crlfile",
        "ssl_ciphers",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "sasl_kerberos_service_name",
        "sasl_kerberos_domain_name",
        "sasl_oauth_token_provider",
        "request_timeout_ms",
        "connections_max_idle_ms",
        "api_version",
        "metadata_max_age_ms",
    }
)
"""Settings every Kafka client takes (security, identity, timeouts); the rest of a consumer's are
its own and are not passed to a producer, reader or admin client made from the same settings."""

CONSUMER_ONLY = frozenset(
    {
        "heartbeat_interval_ms",
        "session_timeout_ms",
        "max_poll_interval_ms",
        "max_poll_records",
        "fetch_min_bytes",
        "fetch_max_wait_ms",
        "fetch_max_bytes",
        "max_partition_fetch_bytes",
        "partition_assignment_strategy",
        "check_crcs",
        "exclude_internal_topics",
        "isolation_level",
        "group_instance_id",
        "leave_group_on_close",
        "auto_commit_interval_ms",
    }
)
"""Consumer settings that a producer refuses."""

T = TypeVar("T")


class KafkaUnavailable(ConnectionError):
    """No broker answered at the bootstrap address within the bootstrap timeout."""


def shared_settings(client: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``client`` that any kind of client takes (:data:`SHARED_SETTINGS`)."""
    return {k: v for k, v in client.items() if k in SHARED_SETTINGS}


def producer_settings(client: Mapping[str, Any]) -> dict[str, Any]:
    """``client`` without the consumer's own settings (:data:`CONSUMER_ONLY`)."""
    return {k: v for k, v in client.items() if k not in CONSUMER_ONLY}


def check_settings(settings: Mapping[str, Any], owned: frozenset[str], what: str) -> dict[str, Any]:
    """A copy of ``settings``; :class:`ValueError` naming those in ``owned`` (set by ``what`` itself)."""
    clash = sorted(set(settings) & owned)
    if clash:
        raise ValueError(f"{what} sets {', '.join(clash)} itself; remove {clash} from the Kafka settings")
    return dict(settings)


def connect(what: str, bootstrap: str, make: Callable[[], T]) -> T:
    """Build a kafka-python client with ``make``, turning its errors into ours."""
    from kafka import errors as kafka_errors  # here: the settings checks load no kafka-python

    try:
        return make()
    except kafka_errors.KafkaConfigurationError as e:
        raise ValueError(f"invalid Kafka settings for the {what}: {e}") from None
    except kafka_errors.KafkaTimeoutError as e:
        raise KafkaUnavailable(f"no Kafka broker reachable at {bootstrap} for the {what}: {e}") from None

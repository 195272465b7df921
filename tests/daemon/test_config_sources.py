"""Settings from the command line, DRIFTWARDEN_* variables, the config file and defaults, in that order; ${VAR}
interpolation and *_file secrets; secrets never in a log line, a repr or an error message."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from driftwarden.daemon.cli import main
from driftwarden.daemon.config import ConfigError, Settings
from driftwarden.daemon.config_sources import read_files
from driftwarden.daemon.runtime import Daemon
from driftwarden.daemon.state.store import Store
from driftwarden.daemon.wiring import open_source
from driftwarden.policies.loader import load_policy

from tests.conftest import ROOT, json_lines

SECRET = "s3cr3t-Kafka-pw-9041"


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_precedence_command_line_over_environment_over_file_over_defaults(tmp_path: Path) -> None:
    config = _config(tmp_path, "batch_size: 10\ncheckpoint_records: 30\nstate_dir: from-file\nlabel_ttl: 1d\n")
    env = {"DRIFTWARDEN_BATCH_SIZE": "20", "DRIFTWARDEN_STATE_DIR": "from-env"}
    s = Settings.load(config, env=env, state_dir=Path("from-cli"))
    assert s.state_dir == Path("from-cli")  # command line beats environment and file
    assert s.batch_size == 20  # environment beats file
    assert s.checkpoint_records == 30 and s.label_ttl == "1d"  # file beats defaults
    assert s.checkpoint_seconds == 5.0 and s.poll_timeout == 0.5  # defaults
    assert Settings.load(config, env=env).state_dir == Path("from-env")
    assert Settings.load(None, env={}).batch_size == 1000


def test_nested_keys_lists_and_pass_through_settings_from_the_environment(tmp_path: Path) -> None:
    config = _config(tmp_path, "source: {kind: kafka, bootstrap: file:9092, topics: [x], group_id: g}\n")
    env = {
        "DRIFTWARDEN_SOURCE__BOOTSTRAP": "env:9092",
        "DRIFTWARDEN_SOURCE__TOPICS": "predictions, labels",
        "DRIFTWARDEN_SOURCE__SETTINGS__SESSION_TIMEOUT_MS": "10000",
        "DRIFTWARDEN_SOURCE__SETTINGS__SECURITY_PROTOCOL": "SASL_SSL",
        "DRIFTWARDEN_SOURCE__SETTINGS__SASL_PLAIN_PASSWORD": "123456",
        "DRIFTWARDEN_SINKS__DECISIONS_TOPIC": "decisions",
        "DRIFTWARDEN_BACKPRESSURE__MAX_RUNNING_ACTIONS": "2",
        "DRIFTWARDEN_POLICIES": "[a.yaml, b.yaml]",
        "DRIFTWARDEN_EXECUTE": "false",
        "DRIFTWARDEN_REQUIRE_KAFKA": "1",  # not a setting: left alone, not an error
        "DRIFTWARDEN_TOKEN": "t",
    }
    s = Settings.load(config, env=env)
    assert s.source.bootstrap == "env:9092" and s.source.group_id == "g"  # merged key by key
    assert s.source.topics == ["predictions", "labels"]
    assert s.source.settings == {
        "session_timeout_ms": 10000,  # a number for kafka-python
        "security_protocol": "SASL_SSL",
        "sasl_plain_password": "123456",  # a secret stays a string, even when it looks like a number
    }
    assert s.sinks.decisions_topic == "decisions" and s.backpressure.max_running_actions == 2
    assert s.policies == [Path("a.yaml"), Path("b.yaml")] and s.execute is False


def test_config_file_interpolates_environment_variables(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "state_dir: ${STATE_ROOT}/dw\n"
        "source:\n  kind: kafka\n  bootstrap: ${KAFKA_HOST:-localhost}:9092\n  topics: [p]\n"
        "  settings: {sasl_plain_password: '${KAFKA_PASSWORD}', client_id: 'cost$$center'}\n",
    )
    s = Settings.load(config, env={"STATE_ROOT": "/var/lib", "KAFKA_PASSWORD": SECRET})
    assert s.state_dir == Path("/var/lib/dw")
    assert s.source.bootstrap == "localhost:9092"
    assert s.source.settings == {"sasl_plain_password": SECRET, "client_id": "cost$center"}
    with pytest.raises(ConfigError, match=r"source\.settings\.sasl_plain_password: \$\{KAFKA_PASSWORD\} is not set"):
        Settings.load(config, env={"STATE_ROOT": "/x"})


def test_secrets_from_files_in_the_config_or_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text(SECRET + "\n")
    config = _config(
        tmp_path,
        f"source: {{kind: kafka, bootstrap: k:9092, topics: [p], settings: {{sasl_plain_password_file: {secret}}}}}\n",
    )
    assert Settings.load(config, env={}).source.settings == {"sasl_plain_password": SECRET}
    env = {"DRIFTWARDEN_SINKS__SETTINGS__SSL_PASSWORD_FILE": str(secret)}
    assert Settings.load(None, env=env).sinks.settings == {"ssl_password": SECRET}
    both = {"DRIFTWARDEN_SOURCE__SETTINGS__SASL_PLAIN_PASSWORD": "x"}
    with pytest.raises(ConfigError, match="not both"):
        Settings.load(config, env=both)
    missing = {"DRIFTWARDEN_SINKS__SETTINGS__SSL_PASSWORD_FILE": str(tmp_path / "nope")}
    with pytest.raises(ConfigError, match=r"sinks\.settings\.ssl_password_file \(from DRIFTWARDEN_SINKS__SETTINGS"):
        Settings.load(None, env=missing)
    # A field the model declares under a *_file name is the model's, not a secret to read.
    kept = read_files({"http": {"token_file": "/run/t"}}, {"http": {"token_file": Path}}, {})
    assert kept == {"http": {"token_file": "/run/t"}}


def test_errors_name_the_setting_and_its_origin_never_the_value(tmp_path: Path) -> None:
    env = {
        "DRIFTWARDEN_BATCH_SIZE": "many",
        "DRIFTWARDEN_SOURCE__KIND": "kafka",
        "DRIFTWARDEN_SOURCE__SETTINGS__SASL_PLAIN_PASSWORD": SECRET,
        "DRIFTWARDEN_SINKS__NOPE": "x",
    }
    with pytest.raises(ConfigError) as e:
        Settings.load(None, env=env)
    message = str(e.value)
    assert "batch_size (from DRIFTWARDEN_BATCH_SIZE)" in message
    assert "sinks.nope (from DRIFTWARDEN_SINKS__NOPE)" in message
    assert "source" in message and SECRET not in message and "many" not in message


def test_secrets_are_never_logged_nor_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(f'{{"model": "m", "id": {i}, "ts": {i}, "prediction": 1, "label": 1}}\n' for i in range(50))
    )
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nmodel: m\nmonitors:\n  e: {kind: adwin, series: error}\n")
    env = {
        "DRIFTWARDEN_SOURCE__SETTINGS__SASL_PLAIN_PASSWORD": SECRET,
        "DRIFTWARDEN_SINKS__SETTINGS__SSL_PASSWORD": SECRET,
        "DRIFTWARDEN_SOURCE__PATH": str(events),
    }
    s = Settings.load(None, env=env)
    assert SECRET not in repr(s) and SECRET not in str(s) and "***" in repr(s)
    assert s.source.settings["sasl_plain_password"] == SECRET  # the client still gets it
    with caplog.at_level(logging.DEBUG):
        log = logging.getLogger("driftwarden")
        log.debug("settings: %s", s)  # what a careless log line would print
        log.info("settings: %r", s)
        daemon = Daemon(s.model_copy(update={"state_dir": tmp_path / "s"}), open_source(s), [load_policy(policy)])
        stats = daemon.run()
        daemon.close()
        with pytest.raises(ConfigError) as e:
            Settings.load(None, env={**env, "DRIFTWARDEN_BATCH_SIZE": "0"})
        logging.getLogger("driftwarden").error("bad config: %s", e.value)
    assert stats.records == 50
    assert len(caplog.records) >= 3
    for record in caplog.records:
        assert SECRET not in record.getMessage()
    bad = CliRunner().invoke(main, ["run", "--policy", str(policy)], env={**env, "DRIFTWARDEN_BATCH_SIZE": "0"})
    assert bad.exit_code == 2 and "batch_size (from DRIFTWARDEN_BATCH_SIZE)" in bad.output
    assert SECRET not in bad.output


def test_driftwarden_variables_configure_a_real_daemon_run(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(f'{{"model": "m", "id": {i}, "ts": {i}, "prediction": 1, "label": {i % 2}}}\n' for i in range(300))
    )
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nmodel: m\nmonitors:\n  e: {kind: adwin, series: error}\n")
    state = tmp_path / "state"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DRIFTWARDEN_")},
        "DRIFTWARDEN_POLICIES": str(policy),
        "DRIFTWARDEN_SOURCE__KIND": "file",
        "DRIFTWARDEN_SOURCE__PATH": str(events),
        "DRIFTWARDEN_STATE_DIR": str(state),
        "DRIFTWARDEN_BATCH_SIZE": "100",
        "DRIFTWARDEN_DEAD_LETTERS": str(tmp_path / "dead.jsonl"),
        "DRIFTWARDEN_SOURCE__SETTINGS__SASL_PLAIN_PASSWORD": SECRET,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "driftwarden.daemon.cli", "run", "--json", "--log-level", "debug"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "driftwarden running" in proc.stderr and SECRET not in proc.stderr + proc.stdout
    summary = json_lines(proc.stdout)[-1]
    assert summary["type"] == "summary" and summary["records"] == 300 and summary["labels_joined"] == 300
    store = Store(state / "state.db")  # the state went where DRIFTWARDEN_STATE_DIR said
    assert store.next_index() == 300
    store.close()
    # The command line still wins: --state-dir over DRIFTWARDEN_STATE_DIR.
    other = tmp_path / "other"
    proc = subprocess.run(
        [sys.executable, "-m", "driftwarden.daemon.cli", "run", "--json", "--state-dir", str(other)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (other / "state.db").exists() and json_lines(proc.stdout)[-1]["records"] == 300

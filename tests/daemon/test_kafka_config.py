"""The Kafka settings: the example config loads, topics are off by default, sinks need a broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from driftwarden.daemon.config import Settings
from driftwarden.daemon.wiring import build_sinks

from tests.conftest import ROOT


def test_the_example_kafka_config_loads() -> None:
    s = Settings.load(ROOT / "examples" / "kafka" / "config.yaml")
    assert s.source.kind == "kafka" and s.source.changelog_topic and s.sinks.decisions_topic
    assert s.source.labeled_topic and s.source.labeled_retention == "7d"
    assert all(Path(p).is_file() for p in [ROOT / p for p in s.policies])


def test_the_labeled_topic_needs_a_changelog() -> None:
    kafka = {"kind": "kafka", "bootstrap": "127.0.0.1:9092", "topics": ["p"], "labeled_topic": "l"}
    with pytest.raises(ValueError, match="labeled_topic.*needs 'changelog_topic'"):
        Settings.model_validate({"source": kafka})
    assert Settings.model_validate({"source": {**kafka, "changelog_topic": "c"}}).source.labeled_topic == "l"


def test_kafka_sinks_are_off_by_default_and_need_a_bootstrap(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    assert (s.sinks.decisions_topic, s.sinks.dead_letter_topic, s.sinks.model_updated_topic) == (None, None, None)
    assert s.source.changelog_topic is None
    bad = Settings.model_validate({"state_dir": str(tmp_path), "sinks": {"decisions_topic": "d"}})
    with pytest.raises(ValueError, match="no bootstrap"):
        build_sinks(bad, _Null(), _Null())


class _Null:
    def write(self, obj: object) -> None: ...

    def flush(self) -> None: ...

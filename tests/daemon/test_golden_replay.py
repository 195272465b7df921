"""Speed-ups never change a signal or a decision: replay output is byte-identical to the golden file,
for any batch size."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.golden.stream import GOLDEN, replay_lines, write_stream


@pytest.mark.parametrize("batch_size", [1000, 333])
def test_replay_output_is_byte_identical_to_golden(tmp_path: Path, batch_size: int) -> None:
    events = write_stream(tmp_path / "events.jsonl")
    lines = replay_lines(events, batch_size=batch_size)
    golden = GOLDEN.read_bytes().splitlines()
    summary_lines = [i for i, line in enumerate(golden) if b'"type":"summary"' in line]
    assert summary_lines == [len(golden) - 1]
    assert lines == golden

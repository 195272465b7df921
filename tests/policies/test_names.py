"""Model names: the check of a whole batch's names agrees with the check of each name."""

from __future__ import annotations

from driftwarden.policies.names import MAX_MODEL_NAME, valid_model_name, valid_model_names
from hypothesis import given, settings
from hypothesis import strategies as st

# Names near every rule's edge, mostly valid ones (a batch is valid only when all its names are): separators,
# control characters, '.' and '..', the length bound.
VALID_PIECES = ["a", "m-1", "shop.eu", "é", " ", "..."]
PIECES = st.sampled_from(VALID_PIECES * 3 + [".", "..", "/", "\\", "\x00", "\x1f", "\x7f"])
NAMES = st.one_of(
    st.lists(PIECES, min_size=1, max_size=3).map("".join),
    st.sampled_from(["", ".", "..", "/", "a/b", "a\\b"]),
    st.integers(MAX_MODEL_NAME - 2, MAX_MODEL_NAME + 2).map(lambda n: "x" * n),
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(NAMES, max_size=6))
def test_a_batch_of_names_is_valid_exactly_when_each_name_is(names: list[str]) -> None:
    assert valid_model_names(names) == all(map(valid_model_name, names))

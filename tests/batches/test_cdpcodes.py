"""CDP's log codes in plain language: a 400 is grouped by its message."""

import pytest

from batches.cdpcodes import BY_KEY, GROUPS, code_group


@pytest.mark.parametrize(
    ("code", "message", "group"),
    [
        ("400", "Identity information missing", "identity"),
        ("400", "Not enough identifying information", "identity"),
        ("400", "Validation error", "validation"),
        ("400", "Failed to parse import line", "unreadable"),
        ("402", "Unsupported mode", "mode"),
        ("403", "Action not allowed", "not_allowed"),
        ("404", "Guest not found", "not_found"),
        ("409", "", "conflict"),
        ("500", "", "cdp_side"),
        ("503", "Service unavailable", "cdp_side"),
        ("418", "", "other"),
        ("", "", "other"),
    ],
)
def test_code_group(code, message, group):
    assert code_group(code, message).key == group


def test_groups_have_distinct_keys_and_a_sentence_each():
    assert len(BY_KEY) == len(GROUPS)
    assert all(g.title and g.explanation.endswith(".") for g in GROUPS)

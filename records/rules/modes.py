"""Guest modes (cdp-batch-api.md sections 1.5, 2.1, 3.1): which envelope `mode` a guest goes
in, and the one rule of insert mode.

CDP documents guest `insert` as not supported (S-GUEST, BX15), so "insert" as a steward says
it is written as CDP's documented `create` (S-LOG lists it among the supported modes; a create
whose identity exists is answered 409). Upsert is the default.
"""

from typing import Any

from .problems import Problem

GUEST_UPSERT = "upsert"
GUEST_CREATE = "create"
# What a file's `mode` column, a batch line or the import option may say, and the mode sent.
GUEST_MODE_WORDS: dict[str, str] = {
    "upsert": GUEST_UPSERT,
    "insert": GUEST_CREATE,
    "create": GUEST_CREATE,
}


def guest_at_cdp_sql(alias: str = "t") -> str:
    """The insert rule in SQL over guest row `alias`; guest_at_cdp is the same in Python.

    CDP has the guest once it confirmed a delivery of it (delivered_hash is kept through
    later rejections), and may have it when the outcome of a send is unknown. Such a guest is
    never inserted again: CDP would refuse it (409).
    """
    return f"({alias}.delivered_hash <> '' OR {alias}.delivery_status = 'unknown')"


def parse_guest_mode(raw: Any) -> str | None:
    """The envelope mode for a mode word ("insert", "Upsert", "create"), None if unknown."""
    if not isinstance(raw, str):
        return None
    return GUEST_MODE_WORDS.get(raw.strip().lower())


def guest_at_cdp(*, delivered_hash: str, delivery_status: str) -> bool:
    """Whether CDP has (or may have) the guest: guest_at_cdp_sql in Python."""
    return bool(delivered_hash) or delivery_status == "unknown"


def insert_at_cdp_problem() -> Problem:
    return Problem(
        "mode",
        "insert_already_at_cdp",
        "CDP already has this guest (a batch delivered it, or may have): insert mode only "
        "creates new guests and CDP would refuse it. Choose upsert to update it.",
    )

"""Cell transforms of a mapping column: trim, value map, date format, case, split.

Each rule compiles once into one function over a cell's text. A transform that does not apply
to a cell (a date that does not match the format, a value missing from the value map) leaves
the text as it was: the CDP rule for the field then says what is wrong, and the row is staged
as invalid for a steward to fix, never refused.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache

from records.mapping.documents import EXCEL_SERIAL, ColumnRule

Transform = Callable[[str], str]

# Excel's day 0 is 1899-12-30 (its serials count a 1900-02-29 that never was).
_EXCEL_EPOCH = datetime(1899, 12, 30)  # noqa: DTZ001 - a calendar date, no time zone
# The in-cell item separator of the flat-file convention (docs/import-formats.md).
LIST_SEPARATOR = "|"
_TIME_DIRECTIVES = ("%H", "%I", "%M", "%S", "%f", "%p", "%X", "%c", "%z", "%Z")


def compile_rule(rule: ColumnRule) -> Transform:
    """The function one column's cells go through (identity when the rule asks for nothing)."""
    steps: list[Transform] = []
    if rule.trim:
        steps.append(str.strip)
    if rule.values:
        steps.append(_value_map(rule.values))
    if rule.date_format:
        steps.append(_excel_serial if rule.date_format == EXCEL_SERIAL else _date(rule.date_format))
    if rule.case == "lower":
        steps.append(str.lower)
    elif rule.case == "upper":
        steps.append(str.upper)
    if rule.split:
        steps.append(_split(rule.split))
    if not steps:
        return _same
    if len(steps) == 1:
        return steps[0]

    def transform(cell: str) -> str:
        for step in steps:
            if not cell:
                return cell
            cell = step(cell)
        return cell

    return transform


def _same(cell: str) -> str:
    return cell


def _value_map(values: dict[str, str] | object) -> Transform:
    exact = dict(values)  # type: ignore[call-overload]
    folded = {k.strip().casefold(): v for k, v in exact.items()}

    def mapped(cell: str) -> str:
        found = exact.get(cell)
        if found is None:
            found = folded.get(cell.strip().casefold())
        return cell if found is None else found

    return mapped


def _date(fmt: str) -> Transform:
    with_time = any(d in fmt for d in _TIME_DIRECTIVES)

    # strptime costs several µs a cell; a date column's values repeat across rows (days of
    # birth, dates of sign-up), and the result depends on the text alone.
    @lru_cache(maxsize=16384)
    def parsed(cell: str) -> str:
        try:
            moment = datetime.strptime(cell.strip(), fmt)  # noqa: DTZ007 - a naive source value is UTC (docs/mapping.md)
        except ValueError:
            return cell
        if with_time:
            return moment.isoformat()
        return moment.date().isoformat()

    return parsed


def _excel_serial(cell: str) -> str:
    try:
        serial = float(cell)
    except ValueError:
        return cell
    if not 1 <= serial < 2_958_466:  # 1900-01-01 .. 9999-12-31
        return cell
    moment = _EXCEL_EPOCH + timedelta(days=serial)
    if serial.is_integer():
        return moment.date().isoformat()
    return moment.replace(microsecond=0).isoformat()


def _split(separator: str) -> Transform:
    def split(cell: str) -> str:
        items = [item.strip() for item in cell.split(separator)]
        return LIST_SEPARATOR.join(item for item in items if item)

    return split

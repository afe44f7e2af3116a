"""Template filters for sizes and durations as people read them (`{% load humanize_units %}`)."""

from datetime import timedelta

from django import template
from django.template.defaultfilters import filesizeformat

register = template.Library()


def duration_text(seconds: float | timedelta | None) -> str:
    """A duration in words: "0.4 s", "42 s", "3 min 5 s", "2 h 4 min"; "" for None."""
    if seconds is None:
        return ""
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def size_text(size: int | None) -> str:
    """Bytes in KB / MB (1 KB = 1,024 bytes, as Django's filesizeformat); "" for None."""
    return "" if size is None else str(filesizeformat(size)).replace("\xa0", " ")


register.filter("duration", duration_text)
register.filter("size", size_text)

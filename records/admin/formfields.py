"""Form fields of the review screens that read and write the way people type."""

import json
from typing import Any

from django import forms
from django.contrib.postgres.forms import SimpleArrayField
from django.utils.html import format_html
from django.utils.safestring import SafeString


class LinesArrayField(SimpleArrayField):
    """A list of texts edited one per line (street lines may contain commas)."""

    widget = forms.Textarea(attrs={"rows": 3})

    def __init__(self, base_field, **kwargs):
        kwargs.pop("delimiter", None)
        super().__init__(base_field, delimiter="\n", **kwargs)

    def to_python(self, value):
        if isinstance(value, str):
            value = "\n".join(line.strip() for line in value.splitlines() if line.strip())
        return super().to_python(value)


class PrettyJSONField(forms.JSONField):
    """JSON shown indented, so attributes and objects are readable and editable."""

    widget = forms.Textarea(attrs={"rows": 6, "cols": 60, "style": "font-family: monospace"})

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


def pretty_json(value: Any) -> SafeString:
    return format_html("<pre>{}</pre>", json.dumps(value, ensure_ascii=False, indent=2))


def choices_with_current(values, current: str | None) -> list[tuple[str, str]]:
    """The valid values as select options, plus the record's current value if it is not one
    of them (an imported invalid value stays visible until the reviewer picks a valid one)."""
    choices = [("", "---------")] + [(v, v) for v in values]
    if current and current not in values:
        choices.insert(1, (current, f"{current} (not valid)"))
    return choices

"""Admin for staged records: review screens and import screens (one module each)."""

from records.admin import erasure, imports, mapping, migrations, review  # noqa: F401  (registers)

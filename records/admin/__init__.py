"""Admin for staged records: review screens and import screens (one module each)."""

from records.admin import erasure, guests, imports, mapping, orders, tracking  # noqa: F401  (registers the ModelAdmins)

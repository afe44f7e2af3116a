"""Admin for staged records: review screens and import screens (one module each)."""

from records.admin import (  # noqa: F401  (registers the ModelAdmins)
    erasure,
    guests,
    imports,
    mapping,
    migrations,
    orders,
    tracking,
)

"""Source layouts -> CDP fields.

- `columns`: the CDP column vocabulary (the dotted flat-file convention, JSON objects and batch
  lines) compiled into the MappedRow every stager takes; a CDP-shaped file needs nothing else.
- `documents`, `transforms`, `suggestion`: saved mappings that turn any other layout into that
  vocabulary (see docs/mapping.md).
"""

from records.mapping.columns import (
    FlatMapping,
    compile_header,
    known_columns,
    map_json_object,
    unknown_columns_message,
)
from records.mapping.rows import ALL_CHILDREN, ChildScope, MappedRow, MappingError, RowError

__all__ = [
    "ALL_CHILDREN",
    "ChildScope",
    "FlatMapping",
    "MappedRow",
    "MappingError",
    "RowError",
    "compile_header",
    "known_columns",
    "map_json_object",
    "unknown_columns_message",
]

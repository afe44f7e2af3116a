"""Streaming import: readers per format, the COPY staging engine and the pipeline joining them.

A package (house style: a module past ~500 lines); everything callers need is re-exported here.
"""

from records.importing.pipeline import StageOptions, stage_source
from records.importing.readers import (
    DELIMITER_BY_NAME,
    DELIMITERS,
    ENCODINGS,
    FileProblem,
    Source,
    count_newlines,
    detect_format,
    open_source,
)
from records.importing.report import REFUSED, ErrorReport
from records.importing.staging import Counts, locked_message

__all__ = [
    "DELIMITER_BY_NAME",
    "DELIMITERS",
    "ENCODINGS",
    "Counts",
    "ErrorReport",
    "FileProblem",
    "REFUSED",
    "Source",
    "StageOptions",
    "count_newlines",
    "detect_format",
    "locked_message",
    "open_source",
    "stage_source",
]

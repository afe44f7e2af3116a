"""Import services: create and carry out import runs, stage rows."""

__all__: list[str] = []

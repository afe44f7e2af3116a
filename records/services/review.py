"""Review services: mark ready, hold, edit and re-validate staged records."""

__all__: list[str] = []

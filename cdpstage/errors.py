"""The one exception a service raises for a wrong state or bad input."""


class ApplicationError(Exception):
    """A problem the user can act on; its message is a sentence shown to them as it is.

    Never put personal data or secrets in the message: it reaches logs and the admin.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

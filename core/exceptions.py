"""Domain errors. Services raise these; one API exception handler maps them to HTTP."""


class DomainError(Exception):
    """A request that the domain refuses. `field` names the input that was wrong."""

    status_code = 400
    default_code = "invalid"
    default_message = "The request is not valid."

    def __init__(self, message: str | None = None, *, field: str | None = None, code: str | None = None):
        self.message = message or self.default_message
        self.field = field
        self.code = code or self.default_code
        super().__init__(self.message)


class NotFound(DomainError):
    status_code = 404
    default_code = "not_found"
    default_message = "Not found."


class Conflict(DomainError):
    status_code = 409
    default_code = "conflict"
    default_message = "The request conflicts with the current state."


class Unprocessable(DomainError):
    status_code = 422
    default_code = "unprocessable"
    default_message = "The request cannot be carried out."

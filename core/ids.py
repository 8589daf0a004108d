import uuid


def uuid_or_none(value) -> uuid.UUID | None:
    """Parse an id from a URL; None when it is not a UUID (which callers treat as 404)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None

"""Assertions on the API's one error shape:
{"type", "errors": [{"code", "detail", "attr"}], "requestId"}, `attr` in camelCase."""

ERROR_TYPES = {"validation_error", "client_error", "server_error"}
_ANY = object()


def assert_error_shape(body) -> None:
    assert isinstance(body, dict), body
    assert set(body) == {"type", "errors", "requestId"}, body
    assert body["type"] in ERROR_TYPES, body
    assert isinstance(body["requestId"], str), body
    assert body["requestId"], body
    assert isinstance(body["errors"], list), body
    assert body["errors"], body
    for error in body["errors"]:
        assert set(error) == {"code", "detail", "attr"}, error
        assert isinstance(error["code"], str), error
        assert error["code"], error
        assert isinstance(error["detail"], str), error
        if error["attr"] is not None:
            assert isinstance(error["attr"], str), error
            assert "_" not in error["attr"], f"attr is not camelCase: {error}"


def assert_error(response, status: int, *, code: str | None = None, attr=_ANY) -> dict:
    """The response is an error of this status in the one shape, with `code` and `attr`
    among its errors when given (attr=None asserts an error with no field)."""
    assert response.status_code == status, (response.status_code, response.content)
    body = response.json()
    assert_error_shape(body)
    if code is not None:
        assert code in [e["code"] for e in body["errors"]], body
    if attr is not _ANY:
        assert attr in [e["attr"] for e in body["errors"]], body
    return body

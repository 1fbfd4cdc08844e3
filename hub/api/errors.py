"""API errors: each carries the HTTP status that fits and a reason for the client."""

from __future__ import annotations

from hub.errors import HubError


class ApiError(HubError):
    """A request that cannot be done as asked; answered as ``{"detail": reason}``."""

    status = 400

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status


class BadRequest(ApiError):
    status = 400


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    """The target's current state does not allow the action (e.g. resolving a resolved one)."""

    status = 409


class Unprocessable(ApiError):
    """Well-formed but invalid input (unknown sector, missing reason, unknown assignee)."""

    status = 422


class Unauthorized(ApiError):
    """No valid credentials: a bearer token for the API, a login for the UI."""

    status = 401

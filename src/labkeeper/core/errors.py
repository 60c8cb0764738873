"""Domain errors. Each carries its HTTP status and a stable `code`; one handler renders them as
`{"error": {"code", "message", "details"}}`. Services raise these, never HTTPException.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """Base of every error a client may see."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    # When true the request's transaction is committed although the request failed
    # (a counted login failure, a recorded lockout).
    commit: bool = False

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, code: str = ""):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(AppError):
    status = 400
    code = "bad_request"


class Unauthenticated(AppError):
    status = 401
    code = "not_authenticated"


class InvalidCredentials(AppError):
    status = 401
    code = "invalid_credentials"
    commit = True


class PermissionDenied(AppError):
    status = 403
    code = "permission_denied"


class CsrfFailed(AppError):
    status = 403
    code = "csrf_failed"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class AlreadyExists(Conflict):
    code = "already_exists"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class Gone(AppError):
    status = 410
    code = "gone"


class Invalid(AppError):
    """A value that passed the schema but breaks a rule (422, names the field)."""

    status = 422
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        if field:
            self.details.setdefault("field", field)


class AccountLocked(AppError):
    status = 423
    code = "account_locked"
    commit = True


class RateLimited(AppError):
    status = 429
    code = "rate_limited"


class ServiceUnavailable(AppError):
    status = 503
    code = "unavailable"


def not_found(entity: str, ident: object) -> NotFound:
    """A 404 that says what was looked for."""
    return NotFound(
        f"{entity} {ident!s} does not exist", details={"entity": entity, "id": str(ident)}
    )

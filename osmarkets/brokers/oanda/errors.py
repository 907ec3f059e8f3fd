"""Typed errors of the OANDA v20 adapter.

Every error carries what OANDA said (``errorCode``, ``errorMessage``, ``rejectReason``) so the
caller can decide without parsing text. Messages are built only from the response body, the
HTTP status and the path: the access token never goes into them.
"""

from __future__ import annotations

from typing import Any


class OandaError(Exception):
    """A request to OANDA (or the sandbox) failed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        reject_reason: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.error_message = error_message
        self.reject_reason = reject_reason
        self.body = body or {}

    @classmethod
    def from_response(cls, status: int, body: dict[str, Any], what: str) -> OandaError:
        """Build the right subclass for an HTTP error answer to ``what`` ('GET /v3/...')."""
        code = body.get("errorCode")
        text = body.get("errorMessage")
        reject = None
        for key, value in body.items():
            if key.endswith("RejectTransaction") and isinstance(value, dict):
                reject = value.get("rejectReason")
                break
        klass: type[OandaError] = {
            401: OandaAuthError,
            403: OandaAuthError,
            404: OandaNotFound,
            429: OandaRateLimited,
        }.get(status, OandaServerError if status >= 500 else OandaError)
        parts = [f"{what}: HTTP {status}"]
        if code:
            parts.append(str(code))
        if text:
            parts.append(str(text))
        if reject and reject != code:
            parts.append(f"rejectReason {reject}")
        if status == 401:
            parts.append("(check the access token and the environment, practice or live)")
        return klass(
            " ".join(parts[:1]) + ": " + " ".join(parts[1:]) if len(parts) > 1 else parts[0],
            status=status,
            error_code=code,
            error_message=text,
            reject_reason=reject,
            body=body,
        )


class OandaAuthError(OandaError):
    """401/403: a wrong token, or an account the token cannot use. Never retried."""


class OandaNotFound(OandaError):
    """404: unknown account, order, trade, position or path."""


class OandaRateLimited(OandaError):
    """429 still answered after every retry."""


class OandaServerError(OandaError):
    """5xx still answered after every retry."""


class OandaConnectionError(OandaError):
    """The server could not be reached (or stopped answering) after every retry."""


class LiveTradingNotConfirmed(OandaError):
    """An order against the live environment without the explicit confirmation."""

"""One exception tree for the whole service; the API maps it to problem+json in one place.

TidingsError                 500  something we did not foresee
├── InvalidInput             422  the request is well-formed but a value is wrong
│   └── MalformedRequest     400  the request could not be parsed at all
├── Unauthenticated          401  no credentials, or credentials we do not know
├── Forbidden                403  known credentials whose role may not do this
├── NotFound                 404  no such object (or another application's)
├── Conflict                 409  a uniqueness rule or a limit
│   └── LimitReached         409  e.g. the 11th webhook of an application
├── PayloadTooLarge          413  the body is over the configured limit
├── RateLimited              429  slow down (carries retry_after seconds)
└── Unavailable              503  the database is busy or unreachable; try again
"""

from __future__ import annotations


class TidingsError(Exception):
    status = 500
    title = "Internal error"
    slug = "internal-error"

    def __init__(self, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class InvalidInput(TidingsError):
    status = 422
    title = "Invalid input"
    slug = "invalid-input"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field  # the input it is about, for forms that show errors beside fields


class MalformedRequest(InvalidInput):
    status = 400
    title = "Malformed request"
    slug = "malformed-request"


class Unauthenticated(TidingsError):
    status = 401
    title = "Unauthenticated"
    slug = "unauthenticated"


class Forbidden(TidingsError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(TidingsError):
    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(TidingsError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class LimitReached(Conflict):
    title = "Limit reached"
    slug = "limit-reached"


class PayloadTooLarge(TidingsError):
    status = 413
    title = "Payload too large"
    slug = "payload-too-large"


class RateLimited(TidingsError):
    status = 429
    title = "Too many requests"
    slug = "rate-limited"


class Unavailable(TidingsError):
    status = 503
    title = "Service unavailable"
    slug = "unavailable"

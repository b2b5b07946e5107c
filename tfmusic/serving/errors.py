"""The one library error of `tfmusic.serving`, carrying a gRPC status code name.

Client failures and server-side request failures are both `ServingError`; the CLI turns them into
exit codes, the gRPC layer into a status, the REST layer into an HTTP code. The HTTP mapping is
TF Serving's (``model_servers/http_server.cc``, ``ToHTTPStatusCode``).
"""

from __future__ import annotations

# gRPC status code name -> HTTP status, as TF Serving's REST server maps them.
HTTP_STATUS = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}


class ServingError(RuntimeError):
    """A failed serving request; ``code`` is the gRPC status code name (e.g. ``NOT_FOUND``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


# tensorflow.error.Code / grpc.StatusCode numbering (identical) -> name.
CODE_NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
              "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
              "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")


def code_number(name: str) -> int:
    """``INVALID_ARGUMENT`` -> 3 (the number a ``StatusProto.error_code`` carries)."""
    return CODE_NAMES.index(name) if name in CODE_NAMES else 2

"""The one error hierarchy of meshplane.

Every error a user can cause maps to one of the App Mesh API's modeled exceptions, with the
HTTP status the API model gives it.  The REST layer turns these into ``x-amzn-errortype``
responses; the CLI prints their message.  Raised by every layer, caught at the edges.
"""

from __future__ import annotations


class MeshplaneError(Exception):
    """Base of all meshplane errors. ``code`` is the App Mesh error type name."""

    code = "InternalServerErrorException"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(MeshplaneError):
    code = "BadRequestException"
    status = 400


class NotFoundError(MeshplaneError):
    code = "NotFoundException"
    status = 404


class ConflictError(MeshplaneError):
    code = "ConflictException"
    status = 409


class ResourceInUseError(MeshplaneError):
    code = "ResourceInUseException"
    status = 409


class LimitExceededError(MeshplaneError):
    code = "LimitExceededException"
    status = 400


class TooManyTagsError(MeshplaneError):
    code = "TooManyTagsException"
    status = 400


class ForbiddenError(MeshplaneError):
    code = "ForbiddenException"
    status = 403


class UnauthorizedError(MeshplaneError):
    """No or invalid credentials (App Mesh reports these as ForbiddenException too)."""

    code = "ForbiddenException"
    status = 401


class TooManyRequestsError(MeshplaneError):
    code = "TooManyRequestsException"
    status = 429


class ServiceUnavailableError(MeshplaneError):
    code = "ServiceUnavailableException"
    status = 503


class CloudMapError(MeshplaneError):
    """An AWS Cloud Map (servicediscovery) modeled error; ``fields`` are the error shape's
    members besides ``Message`` (``NamespaceId`` of NamespaceAlreadyExists, ...)."""

    def __init__(self, message: str, **fields: str) -> None:
        super().__init__(message)
        self.fields = fields


class InvalidInputError(CloudMapError):
    code = "InvalidInput"
    status = 400


class NamespaceNotFoundError(CloudMapError):
    code = "NamespaceNotFound"
    status = 404


class ServiceNotFoundError(CloudMapError):
    code = "ServiceNotFound"
    status = 404


class InstanceNotFoundError(CloudMapError):
    code = "InstanceNotFound"
    status = 404


class OperationNotFoundError(CloudMapError):
    code = "OperationNotFound"
    status = 404


class CloudMapResourceNotFoundError(CloudMapError):
    code = "ResourceNotFoundException"
    status = 404


class NamespaceAlreadyExistsError(CloudMapError):
    code = "NamespaceAlreadyExists"
    status = 400


class ServiceAlreadyExistsError(CloudMapError):
    code = "ServiceAlreadyExists"
    status = 400


class CloudMapResourceInUseError(CloudMapError):
    code = "ResourceInUse"
    status = 409


class ResourceLimitExceededError(CloudMapError):
    code = "ResourceLimitExceeded"
    status = 400


class DuplicateRequestError(CloudMapError):
    code = "DuplicateRequest"
    status = 409


class CustomHealthNotFoundError(CloudMapError):
    code = "CustomHealthNotFound"
    status = 404


class CloudMapTooManyTagsError(CloudMapError):
    code = "TooManyTagsException"
    status = 400


class AccessDeniedError(CloudMapError):
    """A Cloud Map call the caller's roles do not allow (AWS's generic error type)."""

    code = "AccessDeniedException"
    status = 400


class LocalError(MeshplaneError):
    """A problem on this machine rather than in a request: a port or data directory already in
    use, a file that cannot be read.  The CLI exits with its own code for these (5)."""

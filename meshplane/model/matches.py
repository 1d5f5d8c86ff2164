"""Request match shapes shared by routes and gateway routes.

Header and gRPC metadata matches, path matches, query parameter matches and integer
ranges, each enforcing the App Mesh rules (exactly one match kind, end-exclusive ranges with
end > start, path exact XOR regex).  Used by ``route`` and ``gateway_route``.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, Strict, model_validator

from meshplane.model.common import (
    Boolean,
    HeaderMatch,
    HeaderName,
    Long,
    Problems,
    QueryParameterName,
    SpecModel,
    String,
    UnicodeText,
    UnionModel,
)

HttpPathExact = Annotated[str, Strict(), Field(min_length=1, max_length=255), UnicodeText]
HttpPathRegex = HttpPathExact


class MatchRange(SpecModel):
    """An end-exclusive integer range ``[start, end)``."""

    end: Long
    start: Long

    @model_validator(mode="after")
    def _end_after_start(self) -> Self:
        if self.end <= self.start:
            problems = Problems()
            problems.add("end", f"must be greater than start ({self.end} <= {self.start})")
            problems.raise_if_any()
        return self


class HeaderMatchMethod(UnionModel):
    exact: HeaderMatch | None = None
    prefix: HeaderMatch | None = None
    range: MatchRange | None = None
    regex: HeaderMatch | None = None
    suffix: HeaderMatch | None = None


GrpcRouteMetadataMatchMethod = HeaderMatchMethod
GrpcMetadataMatchMethod = HeaderMatchMethod


class HttpRouteHeader(SpecModel):
    invert: Boolean | None = None
    match: HeaderMatchMethod | None = None
    name: HeaderName


HttpGatewayRouteHeader = HttpRouteHeader
GrpcRouteMetadata = HttpRouteHeader
GrpcGatewayRouteMetadata = HttpRouteHeader


class HttpPathMatch(SpecModel):
    """An exact path or a regular expression: exactly one of them."""

    exact: HttpPathExact | None = None
    regex: HttpPathRegex | None = None

    @model_validator(mode="after")
    def _exact_xor_regex(self) -> Self:
        if (self.exact is None) == (self.regex is None):
            problems = Problems()
            problems.add("", "exactly one of exact, regex must be set")
            problems.raise_if_any()
        return self

    @property
    def value(self) -> str:
        """The exact path or the regex, whichever is set."""
        return self.exact if self.exact is not None else (self.regex or "")


class QueryParameterMatch(SpecModel):
    exact: String | None = None


class HttpQueryParameter(SpecModel):
    match: QueryParameterMatch | None = None
    name: QueryParameterName


def check_prefix_or_path(
    problems: Problems, prefix: str | None, path: HttpPathMatch | None, missing: str | None
) -> None:
    """The controller's rules: prefix XOR path, a prefix starts with '/'.

    ``missing`` is the message when neither is given (None when that is allowed).
    """
    if prefix is None and path is None and missing is not None:
        problems.add("", missing)
    if prefix is not None and path is not None:
        problems.add("", "only one of prefix or path may be specified")
    if prefix is not None and not prefix.startswith("/"):
        problems.add("prefix", f"must start with '/' (got {prefix!r})")

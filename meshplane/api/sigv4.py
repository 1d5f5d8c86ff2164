"""AWS Signature Version 4, verified on the server: how boto3 and the AWS CLI authenticate.

A SigV4 request carries ``Authorization: AWS4-HMAC-SHA256 Credential=<key id>/<date>/<region>/
<service>/aws4_request, SignedHeaders=<names>, Signature=<hex>`` and ``X-Amz-Date``.  The server
rebuilds the canonical request from what it received (the path double-encoded as botocore
signs it for every service but S3, the query re-encoded and sorted, the signed headers with
their whitespace folded, the sha256 of the body it actually read) and compares signatures in
constant time.  Pure functions; called by ``meshplane.api.auth``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote_to_bytes

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_SECONDS = 15 * 60

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+"
    r"Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<headers>[a-z0-9;._-]+)\s*,\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})\s*$"
)


class SignatureError(Exception):
    """The request is not a valid SigV4 request (the message says why, for the caller)."""


@dataclass(frozen=True, slots=True)
class Authorization:
    key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def is_sigv4(header: str) -> bool:
    return header.startswith(ALGORITHM)


def parse_authorization(header: str) -> Authorization:
    found = _AUTHORIZATION.match(header)
    if found is None:
        raise SignatureError(
            "malformed SigV4 Authorization header (expected AWS4-HMAC-SHA256 Credential=..., "
            "SignedHeaders=..., Signature=...)"
        )
    parts = found["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts):
        raise SignatureError(
            "SigV4 Credential must be <key id>/<date>/<region>/<service>/aws4_request"
        )
    signed = tuple(found["headers"].split(";"))
    if "host" not in signed or list(signed) != sorted(set(signed)):
        raise SignatureError("SigV4 SignedHeaders must be sorted, distinct and include host")
    return Authorization(parts[0], parts[1], parts[2], parts[3], signed, found["signature"])


def request_time(amz_date: str | None, auth: Authorization, now: float) -> None:
    """Check X-Amz-Date: well-formed, the credential's date, within 15 minutes of ``now``."""
    if amz_date is None:
        raise SignatureError("SigV4 requests need an X-Amz-Date header")
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError("X-Amz-Date must look like 20240101T120000Z") from None
    if amz_date[:8] != auth.date:
        raise SignatureError("the SigV4 credential date is not the date of X-Amz-Date")
    if abs(when.timestamp() - now) > MAX_SKEW_SECONDS:
        raise SignatureError(
            "request time too skewed: X-Amz-Date is more than 15 minutes from the server's time"
        )


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 dot-segment removal, and empty segments dropped, as botocore signs paths."""
    if not path:
        return "/"
    output: list[str] = []
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if output:
                output.pop()
        else:
            output.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and output else ""
    return first + "/".join(output) + last


def canonical_path(raw_path: bytes) -> str:
    normalized = _remove_dot_segments(raw_path.decode("latin-1")).encode("latin-1")
    return quote(normalized, safe="/~")


def canonical_query(raw_query: bytes) -> str:
    if not raw_query:
        return ""
    pairs = []
    for pair in raw_query.split(b"&"):
        key, _, value = pair.partition(b"=")
        pairs.append(
            (
                quote(unquote_to_bytes(key), safe="-_.~"),
                quote(unquote_to_bytes(value), safe="-_.~"),
            )
        )
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_request(
    *,
    method: str,
    raw_path: bytes,
    raw_query: bytes,
    headers: Mapping[str, Sequence[str]],
    signed_headers: Sequence[str],
    body: bytes,
) -> str:
    """The canonical request; ``headers`` maps lower-case names to every value received."""
    lines = []
    for name in signed_headers:
        values = headers.get(name)
        if not values:
            raise SignatureError(f"signed header {name!r} is missing from the request")
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}")
    return "\n".join(
        [
            method.upper(),
            canonical_path(raw_path),
            canonical_query(raw_query),
            "\n".join(lines) + "\n",
            ";".join(signed_headers),
            hashlib.sha256(body).hexdigest(),
        ]
    )


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signature(secret: str, auth: Authorization, amz_date: str, canonical: str) -> str:
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, auth.scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{secret}".encode(), auth.date)
    for part in (auth.region, auth.service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify(secret: str, auth: Authorization, amz_date: str, canonical: str) -> bool:
    return hmac.compare_digest(signature(secret, auth, amz_date, canonical), auth.signature)

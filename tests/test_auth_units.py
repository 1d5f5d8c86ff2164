"""The pure parts of API authentication: SigV4 verification against botocore's own signer
(any change to a signed request breaks the signature), roles and grants, sealed token
secrets, the token key file, and when a server requires credentials."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshplane.api import sigv4
from meshplane.errors import ForbiddenError
from meshplane.server.keys import KeyFileError, token_key
from meshplane.server.settings import Settings, is_loopback
from meshplane.service.access import ALL_MESHES, ANONYMOUS, Grant, Principal, Role
from meshplane.service.tokens import SecretBox, check_bearer, hash_secret, new_key, split_bearer

KEY_ID, SECRET = "MPTABCDEFGHIJKLMNOPQ", "s3cr3t-with/odd+chars="


def sign(method: str, url: str, body: bytes, secret: str = SECRET) -> AWSRequest:
    request = AWSRequest(
        method=method, url=url, data=body, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials(KEY_ID, secret), "appmesh", "us-east-1").add_auth(request)
    return request


def verify(
    request: AWSRequest,
    *,
    method: str | None = None,
    url: str | None = None,
    body: bytes | None = None,
    extra: dict[str, str] | None = None,
) -> bool:
    """Verify as the server would, from what arrives on the wire (optionally altered)."""
    parts = urlsplit(url or request.url)
    headers: dict[str, list[str]] = {"host": [parts.netloc]}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    for name, value in (extra or {}).items():
        headers[name] = [value]
    auth = sigv4.parse_authorization(request.headers["Authorization"])
    sigv4.request_time(request.headers["X-Amz-Date"], auth, time.time())
    try:
        canonical = sigv4.canonical_request(
            method=method or request.method,
            raw_path=parts.path.encode(),
            raw_query=parts.query.encode(),
            headers=headers,
            signed_headers=auth.signed_headers,
            body=(request.body or b"") if body is None else body,
        )
    except sigv4.SignatureError:
        return False
    return sigv4.verify(SECRET, auth, request.headers["X-Amz-Date"], canonical)


names = st.text(min_size=1, max_size=12)
query_values = st.text(max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    segments=st.lists(names, min_size=1, max_size=4),
    query=st.lists(st.tuples(st.sampled_from(["limit", "nextToken", "a b", "x"]), query_values)),
    body=st.binary(max_size=64),
    method=st.sampled_from(["GET", "PUT", "DELETE", "POST"]),
)
def test_botocore_signatures_verify_and_any_change_breaks_them(
    segments: list[str], query: list[tuple[str, str]], body: bytes, method: str
) -> None:
    path = "/v20190125/" + "/".join(quote(s, safe="") for s in segments)
    qs = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query)
    url = f"http://127.0.0.1:8765{path}" + (f"?{qs}" if qs else "")
    request = sign(method, url, body)
    assert verify(request)
    assert not verify(request, body=body + b"x")
    assert not verify(request, method="PATCH")
    assert not verify(request, url=url.replace("/v20190125/", "/v20190125/z"))
    assert not verify(request, url=url + ("&" if qs else "?") + "extra=1")
    assert not verify(request, extra={"host": "127.0.0.1:9999"})
    assert not verify(request, extra={"x-amz-date": "20000101T000000Z"})
    wrong = sign(method, url, body, secret="another secret")
    assert not verify(wrong)


def test_malformed_and_stale_sigv4_headers_are_refused() -> None:
    for header in (
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=a/20240101/r/s/aws4_request, SignedHeaders=x-amz-date, "
        "Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=a/20240101/r/s/aws4_request, SignedHeaders=host;b;a, "
        "Signature=" + "0" * 64,
    ):
        with pytest.raises(sigv4.SignatureError):
            sigv4.parse_authorization(header)
    auth = sigv4.parse_authorization(
        "AWS4-HMAC-SHA256 Credential=a/20240101/r/s/aws4_request, SignedHeaders=host, "
        "Signature=" + "0" * 64
    )
    now = time.mktime((2024, 1, 1, 12, 0, 0, 0, 0, 0)) - time.timezone
    sigv4.request_time("20240101T120500Z", auth, now)
    for stamp in (None, "2024-01-01", "20240101T125000Z", "20240102T120000Z"):
        with pytest.raises(sigv4.SignatureError):
            sigv4.request_time(stamp, auth, now)


def test_roles_and_grants() -> None:
    viewer = Principal("v", (Grant("a", Role.VIEWER),))
    mixed = Principal("m", (Grant("a", Role.EDITOR), Grant(ALL_MESHES, Role.VIEWER)))
    assert viewer.can("a", Role.VIEWER)
    assert not viewer.can("a", Role.EDITOR)
    assert not viewer.can("b", Role.VIEWER)
    assert not viewer.can(ALL_MESHES, Role.VIEWER)
    assert viewer.meshes(Role.VIEWER) == {"a"}
    assert viewer.meshes(Role.EDITOR) == frozenset()
    assert mixed.can("b", Role.VIEWER)
    assert mixed.can("a", Role.EDITOR)
    assert not mixed.can("b", Role.EDITOR)
    assert mixed.meshes(Role.VIEWER) is None
    assert mixed.meshes(Role.EDITOR) == {"a"}
    assert ANONYMOUS.can("anything", Role.ADMIN)
    assert ANONYMOUS.can(ALL_MESHES, Role.ADMIN)
    with pytest.raises(ForbiddenError, match="needs the editor role on mesh 'a'"):
        viewer.require("a", Role.EDITOR, "create a node")
    with pytest.raises(ForbiddenError):
        viewer.require_anywhere(Role.EDITOR, "apply")


def test_sealed_secrets_open_only_with_their_key_and_token_id() -> None:
    box = SecretBox(new_key())
    sealed = box.seal("MPT1", "secret")
    assert box.open("MPT1", sealed) == "secret"
    assert box.open("MPT2", sealed) is None  # bound to its token id
    assert SecretBox(new_key()).open("MPT1", sealed) is None
    assert box.open("MPT1", "not base64!") is None
    assert box.seal("MPT1", "secret") != sealed  # a fresh nonce each time
    assert split_bearer("MPT1.abc.def") == ("MPT1", "abc.def")
    assert split_bearer("MPT1") is None
    assert split_bearer(".x") is None
    assert hash_secret("x") != hash_secret("y")


def test_check_bearer_compares_the_secret_hash(tmp_path: Path) -> None:
    from meshplane.store import ApiToken, open_store

    store = open_store(data_dir=tmp_path)
    try:
        token = ApiToken("MPT1", "a", "viewer", hash_secret("right"), "", "", 0.0, "me")
        store.transact(lambda tx: tx.put_api_token(token))
        assert check_bearer(store, "MPT1.right") == token
        assert check_bearer(store, "MPT1.wrong") is None
        assert check_bearer(store, "MPT2.right") is None
    finally:
        store.close()


def test_token_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "token.key"
    key = token_key(path)
    assert len(key) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert token_key(path) == key
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        token_key(path)
    os.chmod(path, 0o600)
    path.write_bytes(b"short")
    with pytest.raises(KeyFileError, match="not a meshplane token key"):
        token_key(path)


def test_credentials_are_required_off_loopback() -> None:
    for host in ("127.0.0.1", "127.0.0.5", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.1.2.3", "example.com", "192.168.1.1"):
        assert not is_loopback(host), host

    def required(**options: object) -> bool:
        loaded = Settings.load(data_dir=Path("/tmp/x"), env={}, **options)  # type: ignore[arg-type]
        assert loaded.auth is not None
        return loaded.auth.required

    assert not required()
    assert required(host="0.0.0.0")
    assert required(require_auth=True)
    assert Settings.load(data_dir=Path("/d"), env={"MESHPLANE_REQUIRE_AUTH": "1"}).auth.required  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="--tls-cert and --tls-key"):
        Settings.load(data_dir=Path("/d"), env={}, tls_cert=Path("/c.pem"))

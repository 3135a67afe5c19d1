"""JWT verification: signature, issuer, audience, expiry, key rotation and claims."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hmac
import http.server
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from libs.config import ConfigError, Env
from libs.errors import UnavailableError
from services.security import jwt_auth
from services.security.config import SecurityConfig
from services.security.jwt_auth import JwtSettings, JwtVerifier, TokenError, looks_like_jwt

ISSUER = "https://id.example.test/"
AUDIENCE = "ai-gateway"


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key: Any, kid: str) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(key, rsa.RSAPrivateKey):
        entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
        entry["alg"] = "RS256"
    else:
        entry = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
        entry["alg"] = "ES256"
    return {**entry, "kid": kid, "use": "sig"}


def _write_jwks(path: Path, *entries: dict[str, Any]) -> None:
    path.write_text(json.dumps({"keys": list(entries)}))


def _token(key: Any, kid: str, algorithm: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-4711",
        "tenant": "acme",
        "roles": ["user"],
        "iat": now,
        "exp": now + 300,
        **claims,
    }
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
def rsa_key() -> rsa.RSAPrivateKey:
    return _rsa_key()


@pytest.fixture
def jwks_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "jwks.json"
    _write_jwks(path, _jwk(rsa_key, "k1"))
    return path


def _jwk_of(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text())["keys"][0])


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _remove(path: Path) -> None:
    path.unlink()


def _verifier(source: str | Path, **settings: Any) -> JwtVerifier:
    return JwtVerifier(JwtSettings(jwks=str(source), issuer=ISSUER, audience=AUDIENCE, **settings))


async def test_valid_token_gives_its_principal(jwks_file: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = _verifier(jwks_file)

    principal = await verifier.verify(_token(rsa_key, "k1", models=["gpt-4o-mini"]))

    assert principal.tenant == "acme"
    assert principal.key_id == "jwt:user-4711"
    assert principal.roles == ("user",)
    assert principal.allowed_models == ("gpt-4o-mini",)
    assert principal.budget_usd is None


async def test_elliptic_curve_keys_and_space_separated_roles(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwks.json"
    _write_jwks(path, _jwk(key, "ec1"))

    principal = await _verifier(path).verify(_token(key, "ec1", algorithm="ES256", roles="user premium"))

    assert principal.roles == ("user", "premium")


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": int(time.time()) - 3600}, "the token has expired"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"aud": "another-service"}, "audience is not 'ai-gateway'"),
        ({"iss": "https://elsewhere.example.test/"}, "issuer is not"),
        ({"exp": None}, "no `exp` claim"),
        ({"sub": None}, "no `sub` claim"),
        ({"tenant": None}, "`tenant` claim must be a tenant id"),
        ({"tenant": "acme,globex"}, "`tenant` claim must be a tenant id"),
        ({"roles": ["user", "admin,owner"]}, "`roles` claim must be a list of names"),
        ({"sub": "two words"}, "`sub` claim must be"),
    ],
)
async def test_rejected_claims_give_reason(
    jwks_file: Path, rsa_key: rsa.RSAPrivateKey, claims: dict[str, Any], message: str
) -> None:
    token = _token(rsa_key, "k1", **claims)

    with pytest.raises(TokenError, match=message) as rejected:
        await _verifier(jwks_file).verify(token)

    assert token not in str(rejected.value)


async def test_foreign_signature_rejected(jwks_file: Path) -> None:
    with pytest.raises(TokenError, match="signature does not verify"):
        await _verifier(jwks_file).verify(_token(_rsa_key(), "k1"))


async def test_unsigned_and_hmac_tokens_rejected(jwks_file: Path) -> None:
    verifier = _verifier(jwks_file)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "tenant": "acme", "exp": int(time.time()) + 60}
    # The classic confusion attack: an HMAC token keyed with the published public key.
    # PyJWT will not sign one, so it is put together here.
    secret = json.dumps(_jwk_of(jwks_file)).encode()
    signing_input = f"{_b64({'alg': 'HS256', 'kid': 'k1', 'typ': 'JWT'})}.{_b64(claims)}"
    signature = base64.urlsafe_b64encode(hmac.digest(secret, signing_input.encode(), "sha256")).rstrip(b"=")
    shared_secret_token = f"{signing_input}.{signature.decode()}"

    with pytest.raises(TokenError, match="algorithm 'none' is not accepted"):
        await verifier.verify(jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"}))
    with pytest.raises(TokenError, match="algorithm 'HS256' is not accepted"):
        await verifier.verify(shared_secret_token)
    with pytest.raises(TokenError, match="not a well-formed JWT"):
        await verifier.verify("eyJhbGciOi.not-base64!.x")


async def test_algorithm_must_fit_the_key_type(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    elliptic = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwks.json"
    _write_jwks(path, _jwk(elliptic, "ec1"))

    with pytest.raises(TokenError, match="algorithm RS256 does not fit its signing key of type EC"):
        await _verifier(path).verify(_token(rsa_key, "ec1"))


async def test_rotated_key_reloads_key_set(
    jwks_file: Path, rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = _verifier(jwks_file)
    await verifier.verify(_token(rsa_key, "k1"))
    new_key = _rsa_key()
    _write_jwks(jwks_file, _jwk(rsa_key, "k1"), _jwk(new_key, "k2"))

    # Within the reload interval, an unknown key id does not reload the set.
    with pytest.raises(TokenError, match="signing key 'k2' is not in"):
        await verifier.verify(_token(new_key, "k2"))
    monkeypatch.setattr(jwt_auth, "UNKNOWN_KEY_RELOAD_S", 0.0)
    principal = await verifier.verify(_token(new_key, "k2"))

    assert principal.tenant == "acme"


async def test_keys_kept_when_reload_fails(jwks_file: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = _verifier(jwks_file, refresh_s=0.001)
    await verifier.verify(_token(rsa_key, "k1"))
    _remove(jwks_file)
    await asyncio.sleep(0.01)

    principal = await verifier.verify(_token(rsa_key, "k1"))

    assert principal.key_id == "jwt:user-4711"


async def test_missing_key_set_fails_fast_until_retry(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jwks.json"
    verifier = _verifier(path)
    reads = 0
    read = verifier._read

    def counting_read() -> bytes:
        nonlocal reads
        reads += 1
        return read()

    monkeypatch.setattr(verifier, "_read", counting_read)
    monkeypatch.setattr(jwt_auth, "RETRY_AFTER_FAILURE_S", 0.2)

    for _ in range(3):
        with pytest.raises(UnavailableError, match="JWKS|key set"):
            await verifier.verify(_token(rsa_key, "k1"))
    assert reads == 1

    _write_jwks(path, _jwk(rsa_key, "k1"))
    await asyncio.sleep(0.25)
    principal = await verifier.verify(_token(rsa_key, "k1"))

    assert principal.tenant == "acme"
    assert reads == 2


def test_looks_like_jwt() -> None:
    assert looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln")
    assert not looks_like_jwt("sk-aigw-abcdefgh-" + "x" * 32)


@pytest.fixture
def https_jwks(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Iterator[tuple[str, ssl.SSLContext]]:
    """Serve a JWKS over HTTPS on 127.0.0.1 with a certificate made for the test."""
    server_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(server_key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "server.crt", tmp_path / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    body = json.dumps({"keys": [_jwk(rsa_key, "k1")]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - name fixed by http.server
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature fixed by http.server
            return

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client_context = ssl.create_default_context(cafile=str(cert_path))
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", client_context
    finally:
        server.shutdown()
        server.server_close()


async def test_key_set_from_an_https_url(https_jwks: tuple[str, ssl.SSLContext], rsa_key: rsa.RSAPrivateKey) -> None:
    url, context = https_jwks
    verifier = JwtVerifier(JwtSettings(jwks=url, issuer=ISSUER, audience=AUDIENCE), ssl_context=context)

    principal = await verifier.verify(_token(rsa_key, "k1"))

    assert principal.tenant == "acme"


def _config(**variables: str) -> SecurityConfig:
    base = {"SECURITY_DATABASE_URL": "postgresql://127.0.0.1/x"}
    return SecurityConfig.from_env(Env("SECURITY", {**base, **{f"SECURITY_{k}": v for k, v in variables.items()}}))


def test_config_reads_the_jwt_settings(jwks_file: Path) -> None:
    assert _config().jwt is None
    settings = _config(JWT_JWKS=str(jwks_file), JWT_ISSUER=ISSUER, JWT_AUDIENCE=AUDIENCE, JWT_ROLES_CLAIM="groups")
    assert settings.jwt == JwtSettings(jwks=str(jwks_file), issuer=ISSUER, audience=AUDIENCE, roles_claim="groups")


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"JWT_JWKS": "http://id.example.test/jwks"}, "SECURITY_JWT_JWKS='http://id.example.test/jwks' is plain HTTP"),
        ({"JWT_JWKS": "/no/such/jwks.json"}, "neither a file nor an https:// URL"),
        ({"JWT_JWKS": "https://id.example.test/jwks"}, "SECURITY_JWT_ISSUER and SECURITY_JWT_AUDIENCE must be set"),
    ],
)
def test_config_errors_name_the_variable(variables: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(**variables)

"""Passwords, signed session cookies and CSRF tokens (standard library only).

Passwords: scrypt (n=2^14, r=8, p=1, 16-byte salt), stored as ``scrypt$n$r$p$salt$hash``.
Sessions: a cookie holding ``payload.signature`` with HMAC-SHA256 over the payload, where the
payload carries the user, an expiry, the session's CSRF token and, once logged in, a random
session id that the store must still hold (``server_sync/store/sessions.py``: that is how logout,
a reset or a removal end a session); the signature makes the cookie unforgeable. Every form posts the token back and the server compares it in
constant time (the synchroniser-token pattern); the cookie is also SameSite=Lax and HttpOnly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from biovita.errors import ConfigError

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(
            f"password is shorter than {MIN_PASSWORD_LENGTH} characters",
            hint="choose a longer password",
        )
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "$".join(
        [
            "scrypt",
            str(_SCRYPT["n"]),
            str(_SCRYPT["r"]),
            str(_SCRYPT["p"]),
            _b64(salt),
            _b64(digest),
        ]
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


# A stored hash nobody's password matches: verifying against it for unknown users costs the same
# time as for known ones, so login timing does not reveal which user names exist.
DUMMY_HASH = "scrypt$16384$8$1$" + "A" * 22 + "$" + "A" * 43


@dataclass(frozen=True)
class Session:
    username: str | None  # None: not logged in (still has a CSRF token for the login form)
    role: str | None
    csrf: str
    expires: float
    session_id: str | None = None  # logged in: the id the store keeps (hashed) while it lasts

    @classmethod
    def anonymous(cls, lifetime_s: float = 3600) -> Session:
        return cls(None, None, secrets.token_urlsafe(24), time.time() + lifetime_s)

    @classmethod
    def for_user(cls, username: str, role: str, lifetime_s: float) -> Session:
        # a fresh token at login: a token seen before login is worthless after it
        return cls(
            username,
            role,
            secrets.token_urlsafe(24),
            time.time() + lifetime_s,
            secrets.token_urlsafe(32),
        )

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf, token or "")


class SessionSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ConfigError("the session secret is shorter than 32 bytes", hint="regenerate it")
        self._key = hashlib.sha256(b"biovita-session\0" + secret).digest()

    def dumps(self, session: Session) -> str:
        payload = _b64(
            json.dumps(
                [
                    session.username,
                    session.role,
                    session.csrf,
                    session.expires,
                    session.session_id,
                ],
                separators=(",", ":"),
            ).encode()
        )
        return f"{payload}.{self._sign(payload)}"

    def loads(self, cookie: str | None) -> Session | None:
        """The session in a cookie, or None if it is missing, forged, damaged or expired."""
        if not cookie or "." not in cookie:
            return None
        payload, signature = cookie.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            username, role, csrf, expires, session_id = json.loads(_unb64(payload))
        except (ValueError, TypeError):  # damaged, or a cookie of before server-side sessions
            return None
        if not isinstance(expires, (int, float)) or expires < time.time():
            return None
        return Session(username, role, str(csrf), float(expires), session_id)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())


def load_or_create_secret(path: Path) -> bytes:
    """The server's session key, made on first start (0600); sessions survive restarts."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return path.read_bytes()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

"""Review-app sessions kept in the store, so that the server can end them.

A signed cookie alone cannot be taken back: logout, a password reset or a removal left it valid
until it expired (12 h). Now a logged-in cookie carries a random session id; the store keeps its
SHA-256 (a leaked database hands out no cookies), the user and the user's *generation* at login.
Every ``put_user`` (a new user, a password reset, a role change) draws a fresh generation and
drops the user's sessions; ``delete_user`` drops them too. A session counts only while its row
exists, has not expired and carries the user's current generation, so a login racing a reset, or
a name removed and added again, never inherits a session.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from biovita.detection import utc_now
from server_sync.records import Role, User


def session_key(session_id: str) -> str:
    """What the store keeps of a session id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def new_generation() -> str:
    return secrets.token_hex(16)


class SessionQueries:
    """The session queries of ``SqlStore`` (a mixin: it uses the store's transactions)."""

    def start_session(self, session_id: str, user: User, expires: datetime) -> None:
        """Record a login of ``user`` (as read before its password was checked)."""
        t = self.dialect.time_param
        with self.transaction(write=True) as s:
            s.run("DELETE FROM sessions WHERE expires_utc < ?", (t(utc_now()),))
            s.run(
                "INSERT INTO sessions (session_key, username, generation, created_utc, "
                "expires_utc) VALUES (?, ?, ?, ?, ?)",
                (session_key(session_id), user.username, user.generation, t(utc_now()), t(expires)),
            )

    def session_user(self, session_id: str) -> User | None:
        """The user of a live session: it exists, has not expired, and is of the current
        generation of a user who still exists."""
        with self.transaction() as s:
            rows = s.rows(
                "SELECT u.username, u.password_hash, u.role, u.created_utc, u.generation "
                "FROM sessions se JOIN users u ON u.username = se.username "
                "AND u.generation = se.generation WHERE se.session_key = ? AND se.expires_utc > ?",
                (session_key(session_id), self.dialect.time_param(utc_now())),
            )
        return self._user(rows[0]) if rows else None

    def end_session(self, session_id: str) -> None:
        with self.transaction(write=True) as s:
            s.run("DELETE FROM sessions WHERE session_key = ?", (session_key(session_id),))

    def session_count(self, username: str) -> int:
        with self.transaction() as s:
            return int(
                s.rows("SELECT COUNT(*) FROM sessions WHERE username = ?", (username,))[0][0]
            )

    @staticmethod
    def _end_sessions_of(s, username: str) -> None:
        s.run("DELETE FROM sessions WHERE username = ?", (username,))

    def _user(self, row: tuple) -> User:
        name, password_hash, role, created, generation = row
        return User(name, password_hash, Role(role), self.dialect.time_value(created), generation)

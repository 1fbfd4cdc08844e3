"""Who may do what: roles and permissions, password and token hashing, request principals."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hub.db.models import ROLES


class Permission(StrEnum):
    """What a request needs; each role holds a fixed set (``ROLE_PERMISSIONS``)."""

    READ = "read"  # mismatch list, detail, export; stats; connector status; own identity
    ACT = "act"  # assign, resolve, dismiss, reopen, comment (one mismatch or in bulk)
    APPROVE = "approve"  # approve a steward's correction (a second person, SPEC §6)
    OPERATE = "operate"  # pause, resume, restart, re-snapshot a connector
    ADMIN = "admin"  # users and tokens; the audit log


# The permission matrix. Roles are ordered (viewer < steward < approver < operator < admin):
# each role holds everything the one before it holds.
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "viewer": frozenset({Permission.READ}),
    "steward": frozenset({Permission.READ, Permission.ACT}),
    "approver": frozenset({Permission.READ, Permission.ACT, Permission.APPROVE}),
    "operator": frozenset(
        {Permission.READ, Permission.ACT, Permission.APPROVE, Permission.OPERATE}
    ),
    "admin": frozenset(Permission),
}
assert tuple(ROLE_PERMISSIONS) == ROLES

# Roles whose holders may be assigned mismatches.
ASSIGNABLE_ROLES = tuple(r for r in ROLES if Permission.ACT in ROLE_PERMISSIONS[r])


@dataclass(frozen=True)
class Principal:
    """The authenticated user behind a request."""

    user_id: int
    name: str
    role: str

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS.get(self.role, frozenset())


_hasher = PasswordHasher()
# Verified when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id hash (salt and parameters included) of ``password``."""
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored_hash``; a missing hash never matches."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """A bearer token: 32 random bytes, URL-safe base64 (shown once, stored as ``hash_token``)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex of a token; 256 random bits need no salt or slow hash."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; an absent token never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))

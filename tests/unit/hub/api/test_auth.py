"""Roles, password hashing, tokens and CSRF comparison."""

from __future__ import annotations

from hub.api.auth import (
    ASSIGNABLE_ROLES,
    ROLE_PERMISSIONS,
    Permission,
    Principal,
    csrf_matches,
    hash_password,
    hash_token,
    new_token,
    verify_password,
)


def test_permission_matrix_is_viewer_reads_steward_acts_operator_operates_admin_administers():
    assert ROLE_PERMISSIONS["viewer"] == {Permission.READ}
    assert ROLE_PERMISSIONS["steward"] == {Permission.READ, Permission.ACT}
    # issue #22: an approver approves stewards' corrections; the roles stay ordered
    approver = {Permission.READ, Permission.ACT, Permission.APPROVE}
    assert ROLE_PERMISSIONS["approver"] == approver
    assert ROLE_PERMISSIONS["operator"] == approver | {Permission.OPERATE}
    assert ROLE_PERMISSIONS["admin"] == set(Permission)
    assert ASSIGNABLE_ROLES == ("steward", "approver", "operator", "admin")


def test_principal_can_only_what_its_role_holds():
    steward = Principal(1, "lan", "steward")
    assert steward.can(Permission.ACT) and not steward.can(Permission.OPERATE)
    assert not Principal(2, "x", "unknown-role").can(Permission.READ)


def test_password_hash_is_argon2id_and_verifies_only_the_password():
    stored = hash_password("mật khẩu dài")
    assert stored.startswith("$argon2id$") and "mật khẩu" not in stored
    assert verify_password(stored, "mật khẩu dài")
    assert not verify_password(stored, "mat khau dai")
    assert not verify_password(None, "anything")
    assert not verify_password("not-a-hash", "anything")


def test_tokens_are_256_random_bits_stored_as_sha256_hex():
    a, b = new_token(), new_token()
    assert a != b and len(a) == 43
    assert len(hash_token(a)) == 64 and hash_token(a) == hash_token(a) != hash_token(b)


def test_csrf_comparison_refuses_missing_or_different_tokens():
    assert csrf_matches("abc", "abc")
    assert not csrf_matches("abc", "abd")
    assert not csrf_matches(None, None) and not csrf_matches("", "")
    assert not csrf_matches("abc", None)

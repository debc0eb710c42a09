"""Roles from roles.yml and from an IdP groups claim: lookup order, claim shapes, refusal of bad mappings."""

from __future__ import annotations

import pytest

from app.lib import auth

ROLES = """
users:
  boss@clinic.test: owner
roles_claim: groups
claim_roles:
  PT-Desk-North: {role: front_desk, clinics: [CL001]}
  pt-analysts: analyst
domains:
  agency.test: marketing
"""


def test_explicit_user_then_first_mapped_group_then_domain():
    cfg = auth.parse_roles(ROLES)
    assert cfg.claim == "groups"
    # an explicit entry wins over the claim
    assert auth.user_from_roles("boss@clinic.test", cfg, groups=["pt-analysts"]).role == "owner"
    # the first mapped group in roles.yml order wins; names compare case-insensitively
    desk = auth.user_from_roles("sam@clinic.test", cfg, groups=["pt-analysts", "pt-desk-north"])
    assert (desk.role, desk.clinics) == ("front_desk", ("CL001",))
    # the claim beats the domain; without a mapped group the domain applies
    assert auth.user_from_roles("ann@agency.test", cfg, groups=["PT-ANALYSTS"]).role == "analyst"
    assert auth.user_from_roles("ann@agency.test", cfg, groups=["staff"]).role == "marketing"
    # nothing matches: refused (None), also with no email claim at all
    assert auth.user_from_roles("x@else.test", cfg, groups=["staff"]) is None
    assert auth.user_from_roles("", cfg, groups=[]) is None


def test_claim_shapes():
    assert auth.claim_values(["a", "b"]) == ("a", "b")
    assert auth.claim_values("a, b c") == ("a", "b", "c")
    assert auth.claim_values(None) == ()


def test_unknown_role_in_claim_roles_is_refused_by_name():
    with pytest.raises(ValueError, match=r"roles.yml: claim_roles.pt-x: unknown role 'boss'"):
        auth.parse_roles("claim_roles:\n  pt-x: boss\n")

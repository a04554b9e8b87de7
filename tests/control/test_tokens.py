from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sandbox.control.tokens import TokenAuthority
from sandbox.xds.identity import ProxyIdentity

REVIEWS = ProxyIdentity("reviews-v1", "default", "reviews")


def test_a_token_verifies_only_for_the_identity_it_was_issued_for(tmp_path: Path) -> None:
    authority = TokenAuthority.load_or_create(tmp_path)
    token = authority.issue(REVIEWS)
    assert len(token) == 64 and authority.verify(REVIEWS, token)
    for other in (
        ProxyIdentity("reviews-v2", "default", "reviews"),
        ProxyIdentity("reviews-v1", "prod", "reviews"),
        ProxyIdentity("reviews-v1", "default", "ratings"),
    ):
        assert not authority.verify(other, token)


@pytest.mark.parametrize("bad", ["", "00" * 32, "not hex at all", "é" * 64])
def test_forged_tokens_are_refused(tmp_path: Path, bad: str) -> None:
    assert not TokenAuthority.load_or_create(tmp_path).verify(REVIEWS, bad)


def test_field_boundaries_are_part_of_the_signed_message(tmp_path: Path) -> None:
    authority = TokenAuthority.load_or_create(tmp_path)
    a, b = ProxyIdentity("x/y", "z", "sa"), ProxyIdentity("x", "y/z", "sa")
    assert authority.issue(a) != authority.issue(b)


def test_the_secret_is_owner_only_and_survives_a_restart(tmp_path: Path) -> None:
    token = TokenAuthority.load_or_create(tmp_path / "state").issue(REVIEWS)
    secret = tmp_path / "state" / "mesh-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert TokenAuthority.load_or_create(tmp_path / "state").verify(REVIEWS, token)
    assert not TokenAuthority.load_or_create(tmp_path / "other").verify(REVIEWS, token)  # another mesh

"""Cluster TLS keys sealed at rest (farside_gateway.clusters.sealing)."""

from __future__ import annotations

import pytest

from farside_gateway.clusters.sealing import PREFIX, Sealer, SealError

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


def test_sealed_text_hides_the_key_and_opens_again() -> None:
    sealer = Sealer(["correct horse battery staple"])
    sealed = sealer.seal(PEM)
    assert sealed.startswith(PREFIX)
    assert "PRIVATE KEY" not in sealed
    assert sealer.open(sealed) == PEM
    # the same passphrase in another process (another replica) opens it too
    assert Sealer(["correct horse battery staple"]).open(sealed) == PEM


def test_rotation_seals_with_the_first_key_and_opens_with_any() -> None:
    old = Sealer(["old passphrase"]).seal(PEM)
    rotated = Sealer(["new passphrase", "old passphrase"])
    assert rotated.open(old) == PEM
    assert Sealer(["new passphrase"]).open(rotated.seal(PEM)) == PEM


def test_a_key_sealed_elsewhere_fails_with_what_to_do() -> None:
    sealed = Sealer(["one"]).seal(PEM)
    with pytest.raises(SealError, match="same \\[clusters\\] encryption_keys"):
        Sealer(["another"]).open(sealed)


def test_without_configured_keys_each_process_has_its_own() -> None:
    first, second = Sealer([]), Sealer([])
    assert first.ephemeral
    assert not Sealer(["x"]).ephemeral
    assert first.open(first.seal(PEM)) == PEM
    with pytest.raises(SealError):
        second.open(first.seal(PEM))


def test_keys_written_before_sealing_read_as_they_are() -> None:
    assert Sealer(["any"]).open(PEM) == PEM

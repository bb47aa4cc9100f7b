"""Expert credentials: hashing, configuration, authorisation."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inkapp.auth import AccessDenied, Experts, hash_password, verify_password


def test_hash_and_verify() -> None:
    h = hash_password("秘密 pass", iterations=1000)
    assert h.startswith("pbkdf2_sha256$1000$") and "秘密" not in h
    assert verify_password(h, "秘密 pass")
    assert not verify_password(h, "wrong")
    assert not verify_password("garbage", "x")
    assert hash_password("a", 1000) != hash_password("a", 1000)  # salted


def test_open_mode_accepts_names_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INKAPP_EXPERTS", raising=False)
    monkeypatch.delenv("INKAPP_HF_EXPERTS", raising=False)
    e = Experts.from_env()
    assert not e.configured
    assert e.authorise(" 王羲之 ") == "王羲之"
    with pytest.raises(AccessDenied, match="enter your name as the expert"):
        e.authorise("  ")


def test_configured_experts_need_the_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "experts.txt"
    f.write_text(f"# curators\nann={hash_password('pw-ann', 1000)}\n")
    monkeypatch.setenv("INKAPP_EXPERTS", str(f))
    monkeypatch.setenv("INKAPP_HF_EXPERTS", "hf-bob")
    e = Experts.from_env()
    assert e.configured
    assert e.authorise("ann", "pw-ann") == "ann"
    assert e.authorise("anyone", "", hf_user="hf-bob") == "hf-bob"
    for name, pw, hf in [("ann", "nope", None), ("mallory", "pw-ann", None), ("ann", "", "hf-eve")]:
        with pytest.raises(AccessDenied, match="only configured experts may do this"):
            e.authorise(name, pw, hf_user=hf)


def test_malformed_config_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INKAPP_EXPERTS", "ann=plaintext")
    with pytest.raises(ValueError, match="malformed"):
        Experts.from_env()


def test_hash_password_cli() -> None:
    r = subprocess.run([sys.executable, "-m", "inkapp", "hash-password", "ann"], input="s3cret\n",
                       capture_output=True, text=True, check=True)
    name, _, h = r.stdout.strip().partition("=")
    assert name == "ann" and verify_password(h, "s3cret")

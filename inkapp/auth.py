"""Who may write: the experts' credentials.

Anyone may analyse. When experts are configured, only they may correct, undo, retrain
or promote. Two ways to configure them (both may be used):

* ``INKAPP_EXPERTS`` — either ``name=HASH`` entries separated by ``;`` or the path of a
  file with one ``name=HASH`` per line (``#`` comments allowed). ``HASH`` is produced by
  ``inkapp hash-password`` (PBKDF2-HMAC-SHA256, 200 000 iterations, 16-byte salt):
  ``pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>``. Plain passwords are never stored.
* ``INKAPP_HF_EXPERTS`` — comma-separated Hugging Face user names; on a Space with
  ``hf_oauth: true`` a signed-in user of that list is an expert without a password.

With neither set, the app runs open and says so on screen.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

ITERATIONS = 200_000


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    """PBKDF2-HMAC-SHA256 hash string of ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(stored: str, password: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        got = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), base64.b64decode(salt), int(iterations))
        return hmac.compare_digest(got, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


class AccessDenied(PermissionError):
    """The caller may not write (wrong or missing credentials)."""


def _parse_entries(text: str) -> dict[str, str]:
    out = {}
    for raw in text.replace(";", "\n").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.partition("=")
        if not sep or not name.strip() or not hashed.strip().startswith("pbkdf2_sha256$"):
            raise ValueError(f"INKAPP_EXPERTS: malformed entry '{line[:40]}' (expected name=pbkdf2_sha256$...)")
        out[name.strip()] = hashed.strip()
    return out


@dataclass
class Experts:
    """The configured experts; empty means the app is open."""

    passwords: dict[str, str] = field(default_factory=dict)
    hf_users: set[str] = field(default_factory=set)

    @classmethod
    def from_env(cls) -> "Experts":
        spec = os.environ.get("INKAPP_EXPERTS", "").strip()
        if spec and "=" not in spec and Path(spec).is_file():
            spec = Path(spec).read_text(encoding="utf-8")
        hf = {u.strip() for u in os.environ.get("INKAPP_HF_EXPERTS", "").split(",") if u.strip()}
        return cls(_parse_entries(spec) if spec else {}, hf)

    @property
    def configured(self) -> bool:
        return bool(self.passwords or self.hf_users)

    def __post_init__(self) -> None:
        self.passwords = {unicodedata.normalize("NFC", name): h for name, h in self.passwords.items()}
        # A hash of a random password with the largest iteration count configured: an
        # unknown name is checked against it, so it costs as much as a known one.
        counts = [int(h.split("$")[1]) for h in self.passwords.values()
                  if h.count("$") == 3 and h.split("$")[1].isdigit()]
        self._dummy_hash = (hash_password(secrets.token_urlsafe(16), max(counts, default=ITERATIONS))
                            if self.passwords else None)

    def authorise(self, expert: str, password: str = "", hf_user: str | None = None) -> str:
        """The expert name to record for a write, or :class:`AccessDenied`.

        Open mode accepts any non-empty name. A signed-in Hugging Face expert is
        recorded under their HF user name. Names are compared in Unicode NFC. An unknown
        name costs one password hash like a known one (against a dummy hash), so the
        response time does not tell which names are configured.
        """
        expert = unicodedata.normalize("NFC", (expert or "").strip())
        if not self.configured:
            if not expert:
                raise AccessDenied("enter your name as the expert")
            return expert
        if hf_user and hf_user in self.hf_users:
            return hf_user
        stored = self.passwords.get(expert)
        reference = stored or self._dummy_hash
        if reference is not None and verify_password(reference, password or "") and stored:
            return expert
        raise AccessDenied("only configured experts may do this: check the expert name and password"
                           + (" or sign in with Hugging Face" if self.hf_users else ""))

"""The release id: what a release is, without saying what its secrets are.

``r`` + 12 hex digits of SHA-256 over the rendered content with every secret value replaced by a
placeholder naming the secret, combined with an HMAC-SHA256 of the secret env files keyed by the
host's release key (32 random bytes in ``<root>/release.key``, created 0600 by the first preflight,
read in every preflight). A changed secret is a new release; the same inventory and secrets give
the same id on that host; and an id seen in a log, a report or a folder name cannot be checked
against guessed secret values without the key, which never leaves the host but for the kit's run.

A release without secret files has the same id with any key or none. One with secret files and no
key yet (``render`` touches no host) has the id of its content alone, and says so (``keyed``).
"""

from __future__ import annotations

import hashlib
import hmac

ID_HEX_DIGITS = 12


def content_digest(parts: list[tuple[str, bytes]]) -> str:
    """SHA-256 over (path, content) pairs in the order given; secret values already replaced."""
    digest = hashlib.sha256()
    for path, content in parts:
        digest.update(path.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()


def secret_mac(secret_files: list[tuple[str, bytes]], key: bytes) -> bytes:
    """HMAC-SHA256 under ``key`` of the secret files, by path (the path without the release id)."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for path, content in sorted(secret_files):
        mac.update(path.encode() + b"\0" + content + b"\0")
    return mac.digest()


def release_id(digest: str, secret_files: list[tuple[str, bytes]], key: bytes | None) -> str:
    """The id from the content digest and, where there are secret files and a key, their HMAC."""
    if not secret_files or key is None:
        return "r" + digest[:ID_HEX_DIGITS]
    return "r" + hashlib.sha256(bytes.fromhex(digest) + secret_mac(secret_files, key)).hexdigest()[:ID_HEX_DIGITS]

"""The release id covers the secrets without confirming them: a changed secret is a new release,
but an id cannot be reproduced from guessed secret values without the host's release key."""

from __future__ import annotations

import base64
import io
import secrets as random
import tarfile
from pathlib import Path

import pytest

from sparkkit.deploy.apply import HostOps, release_archive
from sparkkit.deploy.outcome import Outcome
from sparkkit.host.executor import Result
from sparkkit.host.facts import parse_release_key
from sparkkit.host.fake import FakeHost
from sparkkit.inventory.build import build_config
from sparkkit.inventory.layers import load_host_layers
from sparkkit.inventory.secrets import Secrets
from sparkkit.release.render import render_release

from .test_deploy_flow import RELEASE_KEY, inspect_json, preflight_text

REPO = Path(__file__).resolve().parent.parent
TRUE_SECRET = "correct-horse-battery-staple"
GUESSES = ["password", "changeme", "searxng", "0" * 32, "correct-horse-battery", TRUE_SECRET, TRUE_SECRET + "\\n"]


def release(secret: str, key: bytes | None, *, host: str = "spark", overrides=()):
    cfg = build_config(load_host_layers(REPO, host, list(overrides)))
    return render_release(cfg, Secrets({"searxng_secret": secret}), REPO, key=key)


def test_a_changed_secret_is_a_new_release_under_the_same_key():
    key = random.token_bytes(32)
    assert release(TRUE_SECRET, key).id == release(TRUE_SECRET, key).id
    assert release(TRUE_SECRET, key).id != release("rotated-" + TRUE_SECRET, key).id


def test_the_id_is_not_reproducible_from_guesses_without_the_key():
    host_key = random.token_bytes(32)
    seen = release(TRUE_SECRET, host_key).id  # what a log, a report or a folder name shows
    for guess in GUESSES:  # the right guess included: without the key it matches nothing
        assert release(guess, None).id != seen
        assert release(guess, random.token_bytes(32)).id != seen
        assert release(guess, b"\0" * 32).id != seen
    # with the key (on the host) the right value, and only it, gives the id back
    assert [g for g in GUESSES if release(g, host_key).id == seen] == [TRUE_SECRET]


def test_without_a_key_the_id_says_nothing_about_the_secret_values():
    ids = {release(guess, None).id for guess in GUESSES}
    assert len(ids) == 1
    unkeyed = release(TRUE_SECRET, None)
    assert not unkeyed.keyed and release(TRUE_SECRET, RELEASE_KEY).keyed
    # ... but it still tracks everything else
    assert release(TRUE_SECRET, None, overrides=["services.searxng.env.EXTRA=1"]).id != unkeyed.id


def test_keying_later_gives_the_same_release_as_rendering_with_the_key():
    later = release(TRUE_SECRET, None).with_key(RELEASE_KEY)
    now = release(TRUE_SECRET, RELEASE_KEY)
    assert later == now
    assert all(f.path.startswith(f"releases/{now.id}/") for f in now.files if not f.path.startswith("files/"))


def test_a_release_without_secrets_has_one_id_with_any_key_or_none():
    no_secrets = ["services.searxng.enabled=false"]
    ids = {release("x", key, overrides=no_secrets).id for key in (None, RELEASE_KEY, random.token_bytes(32))}
    assert len(ids) == 1 and release("x", None, overrides=no_secrets).keyed


def test_the_key_file_is_64_hex_digits():
    assert parse_release_key(RELEASE_KEY.hex() + "\n") == RELEASE_KEY
    for bad in ("", "zz" * 32, RELEASE_KEY.hex()[:-2], RELEASE_KEY.hex() + "00"):
        assert parse_release_key(bad) is None


def _rehearsal(secret: str, key: bytes | None):
    cfg = build_config(load_host_layers(REPO, "rehearsal"))
    return cfg, render_release(cfg, Secrets({"searxng_secret": secret}), REPO, key=key)


def test_deploy_keys_the_release_with_the_key_its_preflight_read():
    cfg, unkeyed = _rehearsal("flow-secret", None)
    expected = unkeyed.with_key(RELEASE_KEY)
    ex = FakeHost([("==sparkkit:docker==", preflight_text(None, [], "[]")), ("ACQUIRED", "ACQUIRED\n"),
                   ("docker inspect $ids", inspect_json([s.name for s in cfg.services]))])
    result = HostOps(ex, cfg, out=lambda _: None, sleep=lambda _: None).deploy(unkeyed)
    assert result.outcome is Outcome.LIVE and result.release == expected.id != unkeyed.id
    [upload] = [r for r in ex.ran if r.stdin_bytes]
    assert upload.argv[-1] == expected.id
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(upload.stdin))) as tar:
        names = sorted(tar.getnames())
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(release_archive(expected, cfg)))) as tar:
        assert names == sorted(tar.getnames())
    assert f"releases/{expected.id}/env/searxng.env" in names


@pytest.mark.parametrize("key_text", ["", "not-a-key"])
def test_deploy_refuses_a_release_with_secrets_when_the_host_has_no_key(key_text):
    cfg, unkeyed = _rehearsal("flow-secret", None)
    text = preflight_text(None, [], "[]").replace(RELEASE_KEY.hex(), key_text)
    ex = FakeHost([("==sparkkit:docker==", Result(rc=0, stdout=text, stderr=""))])
    result = HostOps(ex, cfg, out=lambda _: None).deploy(unkeyed)
    assert result.outcome is Outcome.REFUSED and "release.key" in result.message
    # lock + preflight, then the audit line (refused) with the unlock; nothing was changed
    assert len(ex.commands) == 2 and '"result": "refused"' in ex.commands[1] and "release key" in ex.commands[1]

"""Masking: a secret is hidden wherever the kit writes it, also when it was escaped on the way
(JSON for the audit log and report.json, ``!r`` in messages, shell quoting in command lines)."""

from __future__ import annotations

import ast
import json
import shlex
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sparkkit.inventory.secrets import MASK, Secrets, written_forms

AWKWARD = ['pa"ss\\word', "it's-a-secret", "grüße-€-ключ", "tab\there", "emoji-🔑-key"]


def test_a_secret_with_quotes_backslashes_or_non_ascii_is_masked_in_json():
    secrets = Secrets({f"s{i}": value for i, value in enumerate(AWKWARD)})
    for value in AWKWARD:
        for text in (json.dumps({"reason": f"failed with {value}"}),
                     json.dumps({"reason": value}, ensure_ascii=False),
                     f"refused {value!r}",
                     shlex.join(["echo", value])):
            masked = secrets.mask(text)
            assert MASK in masked, text
            assert not any(form in masked for form in written_forms(value)), (value, masked)


def test_a_url_encoded_secret_is_masked_in_a_url_and_a_query_string():
    secrets = Secrets({f"s{i}": value for i, value in enumerate(AWKWARD + ["a b/c?d=e&f"])})
    for value in [*AWKWARD, "a b/c?d=e&f"]:
        for text in (f"GET http://127.0.0.1:8080/search?q={quote_plus(value)}&format=json failed",
                     f"http://h/{quote(value)}/x", f"token={quote(value, safe='')}"):
            masked = secrets.mask(text)
            assert MASK in masked and value not in unquote_plus(masked), (value, masked)


def test_values_read_from_the_host_are_masked_too():
    secrets = Secrets({"k": "local-value"}).also_masking(["host-only-value", "local-value", ""])
    assert secrets.mask("local-value host-only-value") == f"{MASK} {MASK}"
    assert secrets.mask_only == ("host-only-value",)
    assert secrets.also_masking(["host-only-value"]) is secrets


def test_the_json_stays_json_and_says_mask_where_the_secret_was():
    secrets = Secrets({"k": 'a"b\\c-ü'})
    line = json.dumps({"action": "deploy", "reason": 'token a"b\\c-ü refused'})
    assert json.loads(secrets.mask(line)) == {"action": "deploy", "reason": f"token {MASK} refused"}


def test_text_without_a_secret_is_unchanged():
    assert Secrets({"k": "s3cr3t-value"}).mask('{"a": "b\\"c"} it\'s') == '{"a": "b\\"c"} it\'s'


secret_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\0"),
                      min_size=8, max_size=40)


def _decoded(text: str, how: str) -> str | None:
    """What a reader gets back from the masked text (None where masking broke its syntax)."""
    try:
        if how == "json":
            return json.loads(text)["x"]
        if how == "repr":
            return ast.literal_eval(text)
        if how == "shell":
            return " ".join(shlex.split(text))
        if how == "url":
            return unquote(text)
        if how == "url+":
            return unquote_plus(text)
    except (ValueError, SyntaxError, KeyError, TypeError):
        return None
    return text


@settings(max_examples=300, deadline=None)
@given(secret=secret_text, before=st.text(max_size=20), after=st.text(max_size=20))
def test_no_written_form_of_a_secret_survives_masking(secret, before, after):
    assume(not any(form in MASK for form in written_forms(secret)))  # a secret that is the mask itself
    secrets = Secrets({"k": secret})
    whole = before + secret + after
    for how, text in (("plain", whole), ("json", json.dumps({"x": whole})),
                      ("json", json.dumps({"x": whole}, ensure_ascii=False)), ("repr", repr(whole)),
                      ("shell", shlex.join([before, secret, after])), ("url", quote(whole)),
                      ("url", quote(whole, safe="")), ("url+", quote_plus(whole)),
                      ("url", f"http://h/search?q={quote(whole, safe='')}&x=1")):
        masked = secrets.mask(text)
        assert not any(form in masked for form in written_forms(secret)), (secret, text, masked)
        decoded = _decoded(masked, how)
        assert decoded is None or secret not in decoded, (how, secret, text, masked)

"""The secret scan: every command the kit has, run from the command line against a fake host whose
every answer carries the secret in every encoding the kit knows (raw, JSON-escaped, repr, shell
quoting, URL encoding), must print, write to the audit log and write into reports not one of them.

The commands that do not need the secrets (status, rollback, down, verify) run without them, as an
operator would: their mask comes from the host's own env files, read by the preflight.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from sparkkit.cli.main import main
from sparkkit.host import connect
from sparkkit.host.executor import Result
from sparkkit.host.fake import FakeHost
from sparkkit.inventory.secrets import MASK

from .test_deploy_flow import inspect_json, preflight_text

REPO = Path(__file__).resolve().parent.parent
SECRET = 'Sx-"q\\ü€ /&?=+%k'  # quotes, a backslash, non-ASCII, and what URLs encode
ENCODINGS = {
    "raw": lambda v: v,
    "JSON (ASCII)": lambda v: json.dumps(v)[1:-1],
    "JSON (UTF-8)": lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
    "repr": lambda v: repr(v)[1:-1],
    "repr in single quotes": lambda v: repr(v + "'\"")[1:-4],
    "shell-quoted": shlex.quote,
    "URL path": quote,
    "URL component": lambda v: quote(v, safe=""),
    "URL query": quote_plus,
}
LEAKY = "".join(f"leak {name}: {encode(SECRET)}\n" for name, encode in ENCODINGS.items())
SERVICES = ["audio-pipeline", "context-engine", "ollama", "searxng", "vllm-annie", "vllm-nemotron"]
MANIFEST = json.dumps({"id": "r1", "services": [{"name": s, "image": f"img-{s}", "port": 9000 + i, "depends_on": [],
                                                 "start_timeout_s": 1} for i, s in enumerate(SERVICES)],
                       "files": [{"path": "releases/r1/docker-compose.yml", "mode": "0644", "secret": False}]})
COMMANDS = [  # (argv after the host, needs the secret)
    (["status"], False), (["status", "--json"], False), (["diff"], True), (["deploy"], True),
    (["rollback", "--to", "r1"], False), (["rollback"], False), (["down"], False), (["verify"], False),
    (["deploy-and-verify"], True),
]


def leaks(text: str) -> list[str]:
    """The encodings of SECRET found in ``text``."""
    return [name for name, encode in ENCODINGS.items() if encode(SECRET) in text]


def _logs(ran) -> str:
    nonce = ran.argv[-1]
    return "".join(f"==sparkkit:logs:{nonce}:{s}==\n{LEAKY}" for s in SERVICES)


def _cat(ran) -> str:
    import base64
    paths = ran.argv[5:]
    body = {p: MANIFEST if p.endswith("release.json") else f"# old file\nkey: {LEAKY}" for p in paths}
    return "".join(f"==sparkkit:file:{p}==\n{base64.b64encode(c.encode()).decode()}\n" for p, c in body.items())


def leaky_host() -> FakeHost:
    """Preflight, lock and audit work; every other command fails or answers with the secret in it."""
    env_line = f"SEARXNG_SECRET='{SECRET}'"
    containers = inspect_json(SERVICES).replace('"img"', json.dumps(LEAKY))  # e.g. an image name
    preflight = preflight_text("r2", ["r2", "r1"], containers).replace(
        "==sparkkit:secret-values==\n", f"==sparkkit:secret-values==\n{env_line}\n")
    preflight = preflight.replace("==sparkkit:audit==\n", "==sparkkit:audit==\n" + "\n".join(
        json.dumps({"action": "deploy", "result": "ok", "release": r}) for r in ("r1", "r2")) + "\n")
    return FakeHost([
        ("==sparkkit:docker==", preflight),
        ("echo ACQUIRED", "ACQUIRED\n"),
        ("audit.log", ""),
        ("==sparkkit:logs:", _logs),
        ("==sparkkit:file:", _cat),
        ("release.json", MANIFEST),
        ("docker inspect $ids", containers),
        ("", Result(rc=1, stdout=LEAKY, stderr=LEAKY)),
    ])


@pytest.mark.parametrize("command,needs_secret", COMMANDS, ids=[" ".join(c) for c, _ in COMMANDS])
def test_no_encoding_of_a_secret_reaches_any_output(command, needs_secret, tmp_path, monkeypatch, capsys):
    host = leaky_host()
    monkeypatch.setattr(connect, "executor_for", lambda cfg: host)
    if needs_secret:
        monkeypatch.setenv("SPARKKIT_SECRET_SEARXNG_SECRET", SECRET)
    else:
        monkeypatch.delenv("SPARKKIT_SECRET_SEARXNG_SECRET", raising=False)
    no_probes = [a for s in SERVICES for a in ("-e", f"services.{s}.probe_suites=[]")]
    extra = ["--reports-dir", str(tmp_path / "reports")] if command[0] in ("verify", "deploy-and-verify") else []
    code = main([command[0], "rehearsal", *command[1:], "--project-dir", str(REPO),
                 "-e", f"secrets_file={tmp_path / 'none.yml'}", *no_probes, *extra])
    out, err = capsys.readouterr()
    reports = {str(p): p.read_text(errors="replace") for p in (tmp_path / "reports").rglob("*") if p.is_file()}
    sent = [r.line for r in host.ran]  # audit lines and every other command line sent to the host
    assert code in (0, 1, 3)
    for where, text in [("stdout", out), ("stderr", err), *reports.items(), *(("to host", line) for line in sent)]:
        assert leaks(text) == [], (where, text[:2000])
    # the secret did come this way, and was masked: not a scan of outputs it never reached
    assert MASK in out + err + "".join(reports.values()) + "".join(sent)


def test_the_scan_would_find_a_leak():
    assert leaks(LEAKY) == list(ENCODINGS)
    for name, encode in ENCODINGS.items():  # each encoding alone is found
        assert name in leaks(f"... {encode(SECRET)} ..."), name


def test_the_readme_states_the_scan_as_it_is():
    readme = (REPO / "README.md").read_text()
    assert f"**0 leaks** over {len(ENCODINGS)} encodings x {len(COMMANDS)} commands" in readme

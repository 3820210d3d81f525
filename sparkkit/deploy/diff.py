"""Show what a deploy would change: rendered release vs the host's current one, then any drift of the
host's containers from the current release (``drift.drift``). Secrets masked."""

from __future__ import annotations

import difflib
import json
import re

from sparkkit.deploy.drift import drift, drifted
from sparkkit.host import commands as cmd
from sparkkit.inventory.model import HostConfig
from sparkkit.host.executor import Executor
from sparkkit.host.facts import HostFacts, parse_cat_files
from sparkkit.release.render import Release, RenderedFile
from sparkkit.inventory.secrets import MASK, Secrets

_CONTENT_PATH = re.compile(r"^files/([^/]+)/[0-9a-f]{12}/(.+)$")
_RELEASE_PATH = re.compile(r"^releases/[^/]+/(.+)$")


def logical_path(path: str) -> str:
    """Pair files across releases: drop the release id and the content hash from the path."""
    m = _CONTENT_PATH.match(path)
    if m:
        return f"files/{m.group(1)}/{m.group(2)}"
    m = _RELEASE_PATH.match(path)
    return m.group(1) if m else path


def _display(content: bytes | None, secret: bool) -> str | None:
    if content is None:
        return None
    return RenderedFile(path="", content=content, mode=0o600, secret=secret).display_text()


def unified(local: dict[str, tuple[bytes, bool]], remote: dict[str, tuple[bytes | None, bool]],
            *, remote_label: str, local_label: str, secrets: Secrets) -> str:
    """Diff two {logical path: (content, secret)} maps; secret files show names, values masked."""
    chunks = []
    for path in sorted(set(local) | set(remote)):
        new_raw, new_secret = local.get(path, (None, False))
        old_raw, old_secret = remote.get(path, (None, False))
        new = _display(new_raw, new_secret)
        old = _display(old_raw, old_secret)
        lines = list(difflib.unified_diff(
            (old or "").splitlines(keepends=True), (new or "").splitlines(keepends=True),
            fromfile=f"{remote_label}/{path}" if old is not None else "/dev/null",
            tofile=f"{local_label}/{path}" if new is not None else "/dev/null"))
        if lines:
            chunks.append("".join(line if line.endswith("\n") else line + "\n" for line in lines))
        elif (new_secret or old_secret) and new_raw != old_raw:
            chunks.append(f"~ {path}: secret value(s) changed ({MASK})\n")
    return secrets.mask("".join(chunks))


def drift_lines(facts: HostFacts, images: dict[str, str]) -> str:
    """One ``drift:`` line per service that runs other than the current release says (``images``:
    service -> image tag, from its manifest); empty when nothing drifted."""
    found = drifted(drift(facts.containers, images=images, hashes=facts.current_hashes, image_ids=facts.image_ids))
    if not found:
        return ""
    lines = [f"drift: {d.line(facts.current_release)}\n" for d in found]
    return "".join(lines) + "drift: the next `sparkkit deploy` puts these services back as the release says\n"


def diff_against_host(ex: Executor, cfg: HostConfig, release: Release, secrets: Secrets,
                      current: str | None, *, facts: HostFacts | None = None) -> str:
    """The unified diff of the files; with ``facts`` (the host's, read by preflight), then the drift
    of its containers from the current release (``drift_lines``)."""
    # release.json is derived from the files, so it is left out: the diff shows what matters
    local = {logical_path(f.path): (f.content, f.secret) for f in release.files}
    remote: dict[str, tuple[bytes | None, bool]] = {}
    images: dict[str, str] = {}
    if current:
        manifest_path = f"releases/{current}/release.json"
        raw = parse_cat_files(ex.run(cmd.cat_files(cfg.root, [manifest_path])).stdout).get(manifest_path)
        manifest = json.loads(raw) if raw else {}
        entries = manifest.get("files", [])
        images = {item["name"]: item["image"] for item in manifest.get("services", [])}
        paths = [e["path"] for e in entries]
        files = parse_cat_files(ex.run(cmd.cat_files(cfg.root, paths)).stdout) if paths else {}
        remote = {logical_path(e["path"]): (files.get(e["path"]), bool(e.get("secret"))) for e in entries}
    text = unified(local, remote, remote_label=f"host:{current or 'none'}", local_label=f"new:{release.id}",
                   secrets=secrets)
    return text + (secrets.mask(drift_lines(facts, images)) if facts is not None else "")

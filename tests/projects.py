"""Build small project folders for tests: the repo's roles and templates, an inventory of your own."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def _merge(low, high):
    """Mappings merge key by key, everything else is replaced (the documented rule)."""
    if isinstance(low, dict) and isinstance(high, dict):
        out = dict(low)
        for key, value in high.items():
            out[key] = _merge(low.get(key), value) if key in low else value
        return out
    return high


def _load(text: str):
    return yaml.safe_load(textwrap.dedent(text)) or {}


def make_project(tmp_path: Path, base_files: dict[str, str], overlay: dict[str, str] | None = None,
                 replace: dict[str, str | bytes | None] | None = None) -> Path:
    """Write ``base_files``, deep-merge ``overlay`` YAML text onto the named files (a file not in the
    base is merged onto the copied one, or created), and write ``replace`` files verbatim (text or
    bytes; ``None`` removes a file). Returns the project folder."""
    proj = tmp_path / "proj"
    shutil.copytree(REPO / "roles", proj / "roles")
    shutil.copytree(REPO / "templates", proj / "templates")
    files = {path: _load(text) for path, text in base_files.items()}
    for path, text in (overlay or {}).items():
        if path in files:
            base = files[path]
        else:
            base = _load((proj / path).read_text()) if (proj / path).exists() else {}
        files[path] = _merge(base, _load(text))
    for path, data in files.items():
        target = proj / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(data, sort_keys=False))
    for path, content in (replace or {}).items():
        target = proj / path
        if content is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(textwrap.dedent(content))
    return proj

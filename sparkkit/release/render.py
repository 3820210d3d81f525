"""Render a release in memory: compose file, per-service secret env files and role config files.

Pure: reads templates from the project, returns bytes. The release id is a hash of the content,
so an unchanged inventory renders the same release; secret values enter it only through an HMAC
keyed by the host's release key (``release/ident.py``; ``Release.with_key`` after the preflight).

Files a container mounts live outside the release folder, at a path named by their own content
(``<root>/files/<service>/<hash>/<name>``): compose recreates a service when a mount's source path
changes, so a stable path keeps an unchanged service untouched across releases.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import jinja2
import yaml

from sparkkit.inventory.model import HostConfig, Service
from sparkkit.errors import InputError
from sparkkit.inventory.secrets import MASK, Secrets
from sparkkit.release.ident import content_digest, release_id

COMPOSE_TEMPLATE = "docker-compose.yml.j2"
COMPOSE_FILE = "docker-compose.yml"
MANIFEST_FILE = "release.json"


@dataclass(frozen=True, kw_only=True)
class RenderedFile:
    path: str  # relative to the host's sparkkit root
    content: bytes
    mode: int  # 0o644, or 0o600 for files holding secrets
    secret: bool = False

    def display_text(self) -> str:
        """The content as it may be shown: secret env files show names only."""
        text = self.content.decode("utf-8")
        if not self.secret:
            return text
        return "".join(line.split("=", 1)[0] + f"={MASK}\n" for line in text.splitlines())


@dataclass(frozen=True, kw_only=True)
class Release:
    id: str
    files: tuple[RenderedFile, ...]  # includes the compose file; the manifest is added on upload
    digest: str = ""  # SHA-256 of the content with secret values as placeholders (release/ident.py)
    keyed: bool = True  # False: it has secret files whose values are not in the id yet (no key given)

    @property
    def dir(self) -> str:
        return f"releases/{self.id}"

    def with_key(self, key: bytes) -> "Release":
        """The release with its final id: the secret files' HMAC under the host's ``key`` in it."""
        if self.keyed:
            return self
        prefix = f"{self.dir}/"
        secret_files = [(f.path[len(prefix):], f.content) for f in self.files if f.secret]
        new_id = release_id(self.digest, secret_files, key)
        new_prefix = f"releases/{new_id}/"
        files = tuple(replace(f, path=new_prefix + f.path[len(prefix):]) if f.path.startswith(prefix) else f
                      for f in self.files)
        return Release(id=new_id, files=files, digest=self.digest, keyed=True)

    @property
    def compose_path(self) -> str:
        return f"{self.dir}/{COMPOSE_FILE}"

    def file(self, path: str) -> RenderedFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)

    def manifest(self, *, cfg: HostConfig) -> RenderedFile:
        data = {
            "id": self.id,
            "host": cfg.name,
            "project": cfg.project,
            "services": [{"name": s.name, "image": s.image, "port": s.port,
                          "depends_on": list(s.depends_on), "start_timeout_s": s.start_timeout_s}
                         for s in cfg.services],
            "files": [{"path": f.path, "mode": f"{f.mode:04o}", "secret": f.secret} for f in self.files],
        }
        return RenderedFile(path=f"{self.dir}/{MANIFEST_FILE}",
                            content=(json.dumps(data, indent=2) + "\n").encode(), mode=0o644)


def _yaml_value(value) -> str:
    """Quote any value for YAML (JSON is YAML): inventory text never becomes YAML structure."""
    return json.dumps(value, ensure_ascii=False)


def _compose_value(value) -> str:
    """Quote for a compose file: as YAML, with ``$`` doubled so compose never interpolates it."""
    return _yaml_value(value).replace("$", "$$")


class _Loader(jinja2.FileSystemLoader):
    """A template that is not UTF-8 is bad input that names its file (not a UnicodeDecodeError)."""

    def get_source(self, environment, template):
        try:
            return super().get_source(environment, template)
        except UnicodeDecodeError as exc:
            for folder in self.searchpath:
                if (Path(folder) / template).is_file():
                    template = str(Path(folder) / template)
                    break
            raise InputError(f"not valid UTF-8 (byte {exc.start})", source=_display(template)) from None


def make_environment(project_dir: Path) -> jinja2.Environment:
    project_dir = Path(project_dir)
    env = jinja2.Environment(
        loader=_Loader([str(project_dir / "templates"), str(project_dir / "roles")]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        extensions=["jinja2.ext.do"],
    )
    env.filters["q"] = _compose_value
    env.filters["yaml"] = _yaml_value
    return env


def _render(env: jinja2.Environment, name: str, context: dict) -> str:
    try:
        return env.get_template(name).render(**context)
    except jinja2.UndefinedError as exc:
        raise InputError(f"undefined variable: {exc.message}", source=_template_source(name, exc)) from None
    except jinja2.TemplateSyntaxError as exc:
        source = exc.filename or name
        raise InputError(f"template syntax error at line {exc.lineno}: {exc.message}",
                         source=_display(source)) from None
    except jinja2.TemplateNotFound as exc:
        raise InputError(f"template not found: {exc.name}", source=_display(name)) from None


def _display(filename: str) -> str:
    path = Path(filename)
    parts = path.parts
    for anchor in ("roles", "templates"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor):])
    return f"templates/{filename}" if not path.is_absolute() else filename


def _template_source(name: str, exc: Exception) -> str:
    """Find the template file where an undefined variable was used (from the traceback)."""
    tb = exc.__traceback__
    found = name
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = filename
        tb = tb.tb_next
    return _display(found)


def _content_path(service: str, name: str, content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()[:12]
    return f"files/{service}/{digest}/{name}"


def _env_file_text(svc: Service, secrets: Secrets | None) -> str:
    """The service's env file; with ``secrets`` None, each value is a placeholder naming its secret
    (what the release id's content digest covers)."""
    lines = []
    for env_name, secret in svc.secret_env:
        if secrets is None:
            lines.append(f"{env_name}=<secret {secret}>\n")
            continue
        value = secrets.values[secret]
        if "'" in value:
            raise InputError("secret values must not contain a single quote (') for env files",
                             source="secrets", key=secret)
        lines.append(f"{env_name}='{value}'\n")
    return "".join(lines)


def render_release(cfg: HostConfig, secrets: Secrets, project_dir: Path, *, key: bytes | None = None) -> Release:
    """The release for ``cfg``. ``key``: the host's release key, which puts the secret values into the
    id (keyed); without it a release with secret files gets the id of its content alone, unkeyed,
    until ``Release.with_key``."""
    env = make_environment(project_dir)
    files: list[RenderedFile] = []
    service_files: dict[str, dict[str, str]] = {}  # service -> {file name: absolute host path}
    for svc in cfg.services:
        service_files[svc.name] = {}
        role_files = Path(project_dir) / "roles" / svc.role / "templates" / "files"
        for template in sorted(role_files.glob("*.j2")) if role_files.is_dir() else ():
            name = template.name[:-3]
            text = _render(env, f"{svc.role}/templates/files/{template.name}", {"host": cfg, "svc": svc,
                                                                                "vars": svc.role_vars})
            content = text.encode()
            rel = _content_path(svc.name, name, content)
            files.append(RenderedFile(path=rel, content=content, mode=0o644))
            service_files[svc.name][name] = f"{cfg.root}/{rel}"

    env_files: dict[str, str] = {}
    secret_files: list[tuple[str, str, str]] = []  # (service, env file text, its placeholder text)
    for svc in cfg.services:
        if svc.secret_env:
            env_files[svc.name] = f"env/{svc.name}.env"
            secret_files.append((svc.name, _env_file_text(svc, secrets), _env_file_text(svc, None)))

    compose_text = _render(env, COMPOSE_TEMPLATE, {
        "host": cfg, "services": cfg.services, "files": service_files, "env_files": env_files,
    })
    try:
        parsed = yaml.safe_load(compose_text)
    except yaml.YAMLError as exc:
        raise InputError(f"rendered compose file is not valid YAML: {exc}", source=f"templates/{COMPOSE_TEMPLATE}") from None
    if not isinstance(parsed, dict) or "services" not in parsed:
        raise InputError("rendered compose file has no services", source=f"templates/{COMPOSE_TEMPLATE}")

    # the id: the content with secret values as placeholders, plus their HMAC under the host's key
    digest = content_digest([*((f.path, f.content) for f in sorted(files, key=lambda f: f.path)),
                             ("", compose_text.encode()),
                             *((f"env/{name}.env", placeholders.encode()) for name, _, placeholders in secret_files)])
    secret_parts = [(f"env/{name}.env", text.encode()) for name, text, _ in secret_files]
    rid = release_id(digest, secret_parts, key)
    rel_dir = f"releases/{rid}"
    out = [RenderedFile(path=f"{rel_dir}/{COMPOSE_FILE}", content=compose_text.encode(), mode=0o644)]
    out += [RenderedFile(path=f"{rel_dir}/env/{name}.env", content=text.encode(), mode=0o600, secret=True)
            for name, text, _ in secret_files]
    out += files
    return Release(id=rid, files=tuple(out), digest=digest, keyed=not secret_parts or key is not None)

"""Secret values: from the environment (SPARKKIT_SECRET_<NAME>) or a 0600 YAML secrets file.

Values never leave this module except into 0600 files on the host; ``Secrets.mask`` hides them
in anything printed, in every encoding the kit writes them in (``written_forms``). A command that
does not need the values still masks them: it reads the host's release env files in its preflight
(``also_masking``), so a log line is masked whether or not the secrets were set for this run.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
from dataclasses import dataclass
from urllib.parse import quote, quote_plus
from functools import cached_property

from sparkkit.inventory.model import HostConfig
from sparkkit.errors import InputError
from sparkkit.inventory.layers import parse_yaml_mapping

MASK = "********"


@dataclass(frozen=True)
class Secrets:
    values: dict  # secret name -> value
    mask_only: tuple[str, ...] = ()  # values to hide that this run does not render (read from the host)

    @cached_property
    def _forms(self) -> list[str]:
        """Every written form of every value, longest first (a form inside a longer one goes after it)."""
        values = [*self.values.values(), *self.mask_only]
        forms = {form for value in values if value for form in written_forms(value)}
        return sorted(forms, key=len, reverse=True)

    def also_masking(self, values) -> "Secrets":
        """The same secrets, also hiding ``values`` (e.g. those the host's release env files hold)."""
        extra = tuple(sorted({v for v in values if v} - set(self.mask_only) - set(self.values.values())))
        return self if not extra else Secrets(self.values, self.mask_only + extra)

    def mask(self, text: str) -> str:
        """``text`` with every secret value hidden, also where it was escaped on its way into the
        text: in JSON (ASCII-only or not), a Python repr, or a shell-quoted word."""
        for form in self._forms:
            text = text.replace(form, MASK)
        return text


def written_forms(value: str) -> set[str]:
    """The ways ``value`` shows up in text the kit writes: as it is, JSON-escaped (with and without
    ``ensure_ascii``), repr-escaped (messages use ``!r``), shell-quoted (command lines), and
    URL-encoded (a query string or a URL: ``quote`` with and without ``/`` kept, ``quote_plus``)."""
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1],
             repr(value + "'\"")[1:-4],  # as inside a repr in single quotes, where ' is escaped
             shlex.quote(value), quote(value), quote(value, safe=""), quote_plus(value)}
    return {form for form in forms if form}



def env_name(secret: str) -> str:
    return "SPARKKIT_SECRET_" + secret.upper()


def needed_secrets(cfg: HostConfig) -> set[str]:
    return {secret for svc in cfg.services for _, secret in svc.secret_env}


def placeholder(secret: str) -> str:
    return f"UNSET-{secret}"


def load_secrets(cfg: HostConfig, environ: dict | None = None, *, missing: list | None = None) -> Secrets:
    """Read every secret the config needs. With ``missing`` (a list), an unset secret gets a
    placeholder and its name is appended there instead of failing (for local rendering only)."""
    environ = os.environ if environ is None else environ
    from_file: dict = {}
    shown = str(cfg.secrets_file) if cfg.secrets_file else ""
    if cfg.secrets_file is not None and cfg.secrets_file.exists():
        mode = stat.S_IMODE(cfg.secrets_file.stat().st_mode)
        if mode & 0o077:
            raise InputError(f"secrets file must be mode 0600 (it is {mode:04o}); run: chmod 600 {shown}",
                             source=shown)
        try:
            text = cfg.secrets_file.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("not valid UTF-8", source=shown) from None
        from_file = parse_yaml_mapping(text, shown)
    values = {}
    for secret in sorted(needed_secrets(cfg)):
        if env_name(secret) in environ:
            value = environ[env_name(secret)]
        elif secret in from_file:
            value = from_file[secret]
        elif missing is not None:
            missing.append(secret)
            value = placeholder(secret)
        else:
            where = f" or key {secret!r} in {shown}" if shown else ""
            raise InputError(f"secret {secret!r} is not set: set {env_name(secret)}{where}",
                             source=shown or "environment", key=secret)
        if not isinstance(value, str) or not value or "\n" in value or "\0" in value:
            raise InputError("secret must be a non-empty single-line string", source=shown or "environment",
                             key=secret)
        values[secret] = value
    return Secrets(values)

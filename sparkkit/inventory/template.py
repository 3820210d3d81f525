"""Jinja2 in variable values, evaluated as Ansible does: lazily, with the host's own variables
(a value may use another, which may use a third), ``inventory_hostname``,
``inventory_hostname_short``, ``group_names``, ``groups`` and ``hostvars``; a value that is one
expression keeps its type (``{{ 5 }}`` is a number), text around it makes text; ``!unsafe`` text is
never evaluated. What cannot be evaluated (an undefined variable, an unknown filter, a syntax
error, a loop between variables) is refused with the file and key, never kept as literal text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from itertools import chain, islice
from typing import Any, Callable, Iterator

import jinja2
from jinja2.nativetypes import NativeCodeGenerator, NativeEnvironment
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sparkkit.errors import InputError
from sparkkit.inventory.yamltext import Unsafe

MARKERS = ("{{", "{%", "{#")


def _defined(value: Any) -> Any:
    """An undefined value anywhere in the result fails, as in Ansible (``str`` raises for it)."""
    if isinstance(value, jinja2.Undefined):
        str(value)
    elif isinstance(value, dict):
        for item in value.values():
            _defined(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _defined(item)
    return value


def _concat(values: Iterator[Any]) -> Any:
    head = list(islice(values, 2))
    if not head:
        return ""
    if len(head) == 1:
        return _defined(head[0])
    return "".join(str(v) for v in chain(head, values))


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("yes", "on", "1", "true", "t", "y")


def _ternary(value: Any, true_val: Any, false_val: Any, none_val: Any = None) -> Any:
    if value is None and none_val is not None:
        return none_val
    return true_val if value else false_val


class _CodeGenerator(NativeCodeGenerator):
    def _output_const_repr(self, group) -> str:
        # a value folded while compiling keeps its type when it is the whole template, as at run time
        values = list(group)
        return repr(values[0]) if len(values) == 1 else repr("".join(str(v) for v in values))


class _Env(NativeEnvironment, ImmutableSandboxedEnvironment):
    """Native types, and Jinja2's sandbox: no private attributes, no changing values in place."""
    concat = staticmethod(_concat)
    code_generator_class = _CodeGenerator


def make_env() -> jinja2.Environment:
    env = _Env(undefined=jinja2.StrictUndefined)
    env.filters.update({"bool": _bool, "ternary": _ternary, "to_json": lambda v, **kw: json.dumps(v, **kw),
                        "to_nice_json": lambda v, **kw: json.dumps(v, indent=4, sort_keys=True, **kw),
                        "quote": lambda v: __import__("shlex").quote(str(v))})
    return env


ENV = make_env()


@lru_cache(maxsize=4096)
def _compiled(text: str) -> jinja2.Template:
    return ENV.from_string(text)


def needs_template(value: Any) -> bool:
    return isinstance(value, str) and not isinstance(value, Unsafe) and any(m in value for m in MARKERS)


class TemplateFailure(Exception):
    def __init__(self, path: tuple[str, ...], message: str):
        super().__init__(message)
        self.path = path
        self.message = message


class LazyVars(Mapping):
    """A host's variables, each evaluated when a template first reads it."""

    def __init__(self, raw: dict, magic: dict):
        self.raw = raw
        self.magic = magic
        self.done: dict[str, Any] = {}
        self.busy: list[str] = []
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        if self.busy:
            self.used.add(key)
        if key in self.done:
            return self.done[key]
        if key not in self.raw:
            if key in self.magic:
                return self.magic[key]
            return ENV.globals[key]
        if key in self.busy:
            raise TemplateFailure((key,), f"variables refer to each other in a loop: {' -> '.join(self.busy + [key])}")
        self.busy.append(key)
        try:
            value = self.resolve(self.raw[key], (key,))
        finally:
            self.busy.pop()
        self.done[key] = value
        return value

    def __contains__(self, key: object) -> bool:
        return key in self.raw or key in self.magic or key in ENV.globals

    def __iter__(self):
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def resolve(self, value: Any, path: tuple[str, ...]) -> Any:
        """The value with its templates evaluated. A failure names the key, never the value's text
        (which may be a password)."""
        if isinstance(value, dict):
            return {k: self.resolve(v, path + (str(k),)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, path) for v in value]
        if not needs_template(value):
            return value
        try:
            template = _compiled(str(value))
            ctx = template.new_context(self, shared=True)
            return _concat(template.root_render_func(ctx))
        except TemplateFailure:
            raise
        except jinja2.TemplateSyntaxError as exc:  # SecurityError is a TemplateRuntimeError: below
            raise TemplateFailure(path, f"cannot evaluate its template: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise TemplateFailure(path, f"cannot evaluate its template: {exc.message or type(exc).__name__}") from None
        except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
            raise TemplateFailure(path, f"cannot evaluate its template: {type(exc).__name__} (the message could show a value)") from None
        except RecursionError:
            raise TemplateFailure(path, "cannot evaluate its template: nested too deeply") from None


class HostVarsView(Mapping):
    """``hostvars``: every host's variables, computed when a template reads them."""

    def __init__(self, names: list[str], load: Callable[[str], "LazyVars"]):
        self.names = names
        self.load = load
        self.cache: dict[str, LazyVars] = {}

    def __getitem__(self, host: str) -> Any:
        if host not in self.names:
            raise KeyError(host)
        if host not in self.cache:
            self.cache[host] = self.load(host)
        return self.cache[host]

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def evaluate(raw: dict, magic: dict, origin: Callable[[tuple[str, ...]], str]
             ) -> tuple[dict, set[str], dict[str, InputError]]:
    """Every value of ``raw`` evaluated. Returns the values, the top-level names templates read, and
    the error of each top-level key that could not be evaluated (left out of the values): as in
    Ansible, a failure counts where the value is used (``HostLayers.check``)."""
    lazy = LazyVars(raw, magic)
    out: dict = {}
    failures: dict[str, InputError] = {}
    for key in raw:
        try:
            out[key] = _settled(lazy[key])
        except TemplateFailure as exc:
            failures[key] = InputError(exc.message, source=origin(exc.path), key=".".join(exc.path))
            lazy.busy.clear()
    return out, lazy.used, failures


def _settled(value: Any) -> Any:
    """Evaluated values are final: ``!unsafe`` text becomes plain text (nothing evaluates it later)."""
    if isinstance(value, Unsafe):
        return str(value)
    if isinstance(value, dict):
        return {k: _settled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_settled(v) for v in value]
    return value

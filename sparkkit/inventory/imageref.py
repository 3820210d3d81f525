"""Image references as Docker reads them: the grammar of distribution/reference (the package
the Docker CLI parses with; `docker tag` is the oracle in tests/integration), so an inventory's image is refused here, naming its file
and key, instead of by `docker` on the host part-way through a deploy. Pure: no I/O.

    reference   := name [ ":" tag ] [ "@" digest ]
    name        := [ domain "/" ] path-component ( "/" path-component )*
    domain      := host [ ":" port ]      (the first component, when it has a "." or ":",
                                           or is "localhost")
    path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag         := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest      := algorithm ":" [0-9a-fA-F]{32,}
"""

from __future__ import annotations

import re

NAME_MAX = 255  # the longest normalised name (without tag and digest) Docker accepts

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)(?::{_TAG})?(?:@{_DIGEST})?", re.ASCII)
_PATH_ONLY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*", re.ASCII)


def image_problem(ref: str) -> str | None:
    """Why Docker would refuse ``ref`` as an image reference; None when it is a valid one."""
    match = _REFERENCE.fullmatch(ref)
    if match is None:
        if ref.lower() != ref and _REFERENCE.fullmatch(ref.lower()):
            return "repository names must be lower-case"
        return "not in the image reference grammar ([registry/]name[:tag][@digest])"
    name = match.group("name")
    first, _, rest = name.partition("/")
    if rest and not _is_domain(first) and not _PATH_ONLY.fullmatch(name):
        return "repository names must be lower-case"
    if len(full_name(name)) > NAME_MAX:
        return f"the name is longer than {NAME_MAX} characters with its registry ({full_name(name)[:18]}...)"
    return None


def full_name(name: str) -> str:
    """The name as Docker normalises it (its length limit counts this): Docker Hub's domain, and
    ``library/`` for an official image, added where the reference has no registry."""
    first, _, rest = name.partition("/")
    if rest and _is_domain(first):
        return name
    return f"docker.io/{name}" if rest else f"docker.io/library/{name}"


def _is_domain(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"

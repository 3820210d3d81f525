"""A real Docker engine is the oracle for the image reference grammar: every reference of the
shared table, and a few hundred random ones, get the same verdict from ``image_problem`` as from
Docker's own parsers: `docker tag BASE REF` (refused, or accepted: a tag it makes is removed
again; only a digest, which a tag cannot carry, is refused for another reason), and a reference
that names an image already there is not tried."""

import random
import subprocess

import pytest

from sparkkit.inventory.imageref import image_problem
from tests.imageref_cases import INVALID, VALID

pytestmark = pytest.mark.integration

ALPHABET = "abcz09AZ._-:/@"


def random_refs(n: int, seed: int = 13) -> list[str]:
    rng = random.Random(seed)
    refs = set()
    while len(refs) < n:
        body = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 14)))
        if rng.random() < 0.2:
            body += "@sha256:" + "".join(rng.choice("0123456789abcdef") for _ in range(64))
        if not body.startswith("-"):
            refs.add(body)
    return sorted(refs)


BASE = "sparkkit-rehearsal-base:latest"  # built by the testbed

TAG_SCRIPT = r"""
base="$1"; shift
for r in "$@"; do
  if docker image inspect -- "$r" >/dev/null 2>&1; then echo skip; continue; fi
  if err=$(docker tag "$base" "$r" 2>&1); then docker rmi -- "$r" >/dev/null 2>&1; echo 0
  else case "$err" in *"digest reference"*) echo 0;; *) echo 1;; esac; fi
done
"""


def docker_refuses(refs: list[str]) -> dict[str, bool]:
    """The Docker CLI's verdict on each reference, in one shell: True where it is invalid."""
    out = subprocess.run(["sh", "-c", TAG_SCRIPT, "sh", BASE, *refs], capture_output=True, text=True,
                         timeout=300, check=True)
    verdicts = out.stdout.split()
    assert len(verdicts) == len(refs)
    return {ref: v == "1" for ref, v in zip(refs, verdicts) if v != "skip"}


def test_the_grammar_agrees_with_docker():
    refs = [r for r in VALID + INVALID if not r.startswith("-")] + random_refs(300)
    verdicts = docker_refuses(refs)
    disagree = {ref: (image_problem(ref), refused) for ref, refused in verdicts.items()
                if (image_problem(ref) is not None) != refused}
    assert not disagree
    assert sum(verdicts.values()) > 50 and sum(not v for v in verdicts.values()) > 20  # both kinds were tried

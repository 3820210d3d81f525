"""The image reference grammar (distribution/reference), on the table tests/imageref_cases.py
shares with the integration test that asks a real Docker engine."""

import pytest

from sparkkit.inventory.imageref import image_problem
from tests.imageref_cases import INVALID, VALID


@pytest.mark.parametrize("ref", VALID)
def test_docker_accepts_these(ref):
    assert image_problem(ref) is None


@pytest.mark.parametrize("ref", INVALID)
def test_docker_refuses_these(ref):
    assert image_problem(ref)


def test_the_reason_says_lower_case_when_that_is_all_that_is_wrong():
    assert image_problem("Ubuntu:1") == "repository names must be lower-case"
    assert image_problem("team/App") == "repository names must be lower-case"
    assert image_problem("Team/app") == "repository names must be lower-case"
    assert "longer than 255 characters with its registry (docker.io/library/...)" in image_problem("a" * 238)

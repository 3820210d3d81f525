"""The rehearsal testbed as code: project copies aimed at the rehearsal host (``stack``) and at the
fleet's namespace hosts (``fleet``), the checks that say whether the testbed is there, and a small
Docker helper to look at the host directly.

Used by the integration tests (tests/integration/conftest.py wraps it in pytest fixtures) and by
``make bench`` (bench/). It may import the standard library and PyYAML only: never ``sparkkit``
(it sets up what the kit is pointed at) and never ``tests``. The shell side of the testbed
(setup.sh, netns.sh, the simulator images in image/) lives beside it.
"""

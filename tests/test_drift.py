"""Drift: what the containers run against what the current release says (pure, deploy/drift.py)."""

from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from sparkkit.deploy.drift import DriftState, ServiceDrift, drift, drifted
from sparkkit.host.facts import Container

IMAGES = {"a": "img-a:1", "b": "img-b:1"}
HASHES = {"a": "hash-a", "b": "hash-b"}
IDS = {"img-a:1": "sha256:aaaa", "img-b:1": "sha256:bbbb"}


def box(service, *, config_hash=None, image_id=None, status="running", health="healthy", cid="c"):
    return Container(service=service, id=cid + service, name=f"p-{service}-1", status=status, health=health,
                     restarts=0, started_at=datetime(2026, 1, 1, tzinfo=timezone.utc), exit_code=0, oom_killed=False,
                     image=IMAGES.get(service, "img-x:1"), host_ports=(),
                     config_hash=HASHES.get(service, "hash-x") if config_hash is None else config_hash,
                     image_id=IDS.get(IMAGES.get(service, ""), "sha256:xxxx") if image_id is None else image_id)


def states(containers, **kw):
    args = {"images": IMAGES, "hashes": HASHES, "image_ids": IDS, **kw}
    return {d.service: d.state for d in drift(containers, **args)}


def test_a_host_that_runs_the_release_has_no_drift():
    report = drift([box("a"), box("b")], images=IMAGES, hashes=HASHES, image_ids=IDS)
    assert [d.state for d in report] == [DriftState.OK, DriftState.OK]
    assert drifted(report) == ()


def test_each_kind_of_drift_is_named_per_service():
    assert states([box("a", config_hash="hash-by-hand"), box("b")]) == {"a": DriftState.CONFIG, "b": DriftState.OK}
    assert states([box("a"), box("b", image_id="sha256:older")]) == {"a": DriftState.OK, "b": DriftState.IMAGE}
    assert states([box("a")]) == {"a": DriftState.OK, "b": DriftState.MISSING}
    assert states([box("a"), box("b"), box("x")])["x"] is DriftState.EXTRA
    assert states([box("a"), box("b"), box("b", cid="d")])["b"] is DriftState.EXTRA  # two containers, one service
    assert states([box("a", status="exited", health=""), box("b", health="unhealthy")]) == {
        "a": DriftState.NOT_READY, "b": DriftState.NOT_READY}


def test_an_unknown_fact_is_never_ok():
    assert states([box("a"), box("b")], hashes={"a": "hash-a"})["b"] is DriftState.UNKNOWN
    assert states([box("a"), box("b")], image_ids={"img-a:1": "sha256:aaaa"})["b"] is DriftState.UNKNOWN
    assert states([box("a", config_hash=""), box("b", image_id="")]) == {"a": DriftState.UNKNOWN,
                                                                          "b": DriftState.UNKNOWN}


def test_a_known_difference_wins_over_an_unknown_or_a_sick_container():
    # the config hash differs and the container is not ready: the config is what the deploy must fix
    assert states([box("a", config_hash="other", status="restarting", health=""), box("b")])["a"] is DriftState.CONFIG
    # the hash of the release is unknown, but the image is known to differ
    assert states([box("a", image_id="sha256:older"), box("b")], hashes={})["a"] is DriftState.IMAGE


def test_lines_say_what_runs_and_what_the_release_says():
    [a, b] = drift([box("a", config_hash="abcdef0123456789"), box("b", image_id="sha256:0123456789abcdef")],
                   images=IMAGES, hashes={"a": "fedcba9876543210", "b": "hash-b"}, image_ids=IDS)
    assert a.line("r1") == "a runs config abcdef012345, release r1 says fedcba987654"
    assert b.line("r1") == "b runs image 0123456789ab, release r1's image img-b:1 is bbbb"
    [_, missing] = drift([box("a")], images=IMAGES, hashes=HASHES, image_ids=IDS)
    assert missing.line("r1") == "b has no container, release r1 runs it"
    [extra] = drift([box("x")], images={}, hashes={}, image_ids={})
    assert extra.line(None) == "x runs, but release none has no such service"
    sick = ServiceDrift(service="a", state=DriftState.NOT_READY, running="running unhealthy")
    assert sick.line("r1") == "a runs what release r1 says but is running unhealthy"


names = st.sampled_from(["a", "b", "c", "d"])
hashes = st.sampled_from(["h1", "h2", ""])
ids = st.sampled_from(["sha256:1", "sha256:2", ""])
containers = st.lists(st.builds(lambda s, h, i, ok: box(s, config_hash=h, image_id=i,
                                                        health="healthy" if ok else "unhealthy"),
                                names, hashes, ids, st.booleans()), max_size=6)


@settings(max_examples=300, deadline=2000)
@given(containers, st.dictionaries(names, st.sampled_from(["img-1", "img-2"])),
       st.dictionaries(names, hashes), st.dictionaries(st.sampled_from(["img-1", "img-2"]), ids))
def test_ok_only_when_one_ready_container_matches_known_hash_and_image(boxes, images, want_hashes, image_ids):
    report = drift(boxes, images=images, hashes=want_hashes, image_ids=image_ids)
    assert [d.service for d in report] == sorted(set(images) | {c.service for c in boxes})
    for d in report:
        mine = [c for c in boxes if c.service == d.service]
        match = (d.service in images and len(mine) == 1 and mine[0].ready
                 and mine[0].config_hash != "" and mine[0].config_hash == want_hashes.get(d.service)
                 and mine[0].image_id != "" and mine[0].image_id == image_ids.get(images[d.service]))
        assert (d.state is DriftState.OK) == match, (d, mine)
        assert d.drifted == (not match)
        assert d.line("r1").startswith(d.service + " ")

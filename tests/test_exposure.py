"""Exposure: where each API is reachable is an inventory value with a safe default (127.0.0.1); a
placement's head serves vLLM on that address and Ray on the interconnect address only; an API on all
interfaces without an API key is warned about by ``diff`` and in the report."""

from __future__ import annotations

import pytest
import yaml

from sparkkit.cli.main import main
from sparkkit.errors import InputError
from sparkkit.host import connect
from sparkkit.host.fake import FakeHost
from sparkkit.inventory.build import build_config
from sparkkit.inventory.exposure import exposure_warnings
from sparkkit.inventory.layers import load_host_layers
from sparkkit.inventory.secrets import Secrets
from sparkkit.probe.targets import bind_of, needs_tunnel
from sparkkit.release.render import COMPOSE_FILE, render_release
from sparkkit.verify.report import render_markdown
from sparkkit.deploy.outcome import Verdict
from sparkkit.verify.run import Verification

from .test_deploy_flow import inspect_json, preflight_text
from .test_placement import project

REPO_SECRETS = Secrets({"searxng_secret": "s3cret-value"})


def rendered(proj, host, *extra):
    cfg = build_config(load_host_layers(proj, host, list(extra)))
    release = render_release(cfg, Secrets({}), proj)
    compose = next(f.content for f in release.files if f.path.endswith(COMPOSE_FILE)).decode()
    return cfg, yaml.safe_load(compose)["services"]


def test_by_default_every_api_is_published_on_the_loopback_only_and_nothing_is_warned(tmp_path):
    cfg, services = rendered(project(tmp_path), "spark-c")
    assert services["app"]["ports"] == ["127.0.0.1:8010:8010"]
    assert [s.bind_address for s in cfg.services] == ["127.0.0.1"]
    assert exposure_warnings(cfg) == []


def test_a_service_bind_address_overrides_the_hosts(tmp_path):
    proj = project(tmp_path, overlay={"inventory/group_vars/all.yml": """
        bind_address: 10.0.0.5
        services: {other: {role: audio_pipeline, port: 8020, bind_address: 127.0.0.1}}"""})
    cfg, services = rendered(proj, "spark-c")
    assert services["app"]["ports"] == ["10.0.0.5:8010:8010"]
    assert services["other"]["ports"] == ["127.0.0.1:8020:8020"]
    assert bind_of(cfg, cfg.service("app")) == "10.0.0.5" and bind_of(cfg, cfg.service("other")) == "127.0.0.1"
    assert needs_tunnel(cfg, cfg.service("other")) and needs_tunnel(cfg, cfg.service("app"))


@pytest.mark.parametrize("value", ["all", "0.0.0.0; reboot", "::1 ::2"])
def test_a_bad_service_bind_address_is_bad_input_naming_the_key(tmp_path, value):
    proj = project(tmp_path, overlay={"inventory/group_vars/all.yml": f"services: {{app: {{bind_address: '{value}'}}}}"})
    with pytest.raises(InputError, match="services.app.bind_address: expected an IP address"):
        build_config(load_host_layers(proj, "spark-c"))


def test_the_head_serves_vllm_on_the_bind_address_and_ray_on_the_link_address(tmp_path):
    cfg, services = rendered(project(tmp_path), "spark-a")
    big = services["big"]
    assert big["network_mode"] == "host"  # all of the host's interfaces: so nothing listens on 0.0.0.0
    cmd = big["command"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    script = big["entrypoint"][2]
    assert '--node-ip-address="$$VLLM_HOST_IP"' in script and "--dashboard-host=127.0.0.1" in script
    assert big["environment"]["VLLM_HOST_IP"] == "192.168.100.10"
    assert exposure_warnings(cfg) == []
    # a chosen address, e.g. the interconnect, is where vLLM listens
    _, services = rendered(project(tmp_path / "b"), "spark-a", "services.big.bind_address=192.168.100.10")
    cmd = services["big"]["command"]
    assert cmd[cmd.index("--host") + 1] == "192.168.100.10"


def test_with_its_own_network_a_service_listens_inside_its_container_and_is_published_on_the_bind_address(tmp_path):
    proj = project(tmp_path, overlay={"inventory/group_vars/pair.yml": """
        services: {big: {container_port: 8000, placement: {network: bridge}}}"""})
    _, services = rendered(proj, "spark-a")
    cmd = services["big"]["command"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"  # the container's own interfaces
    assert services["big"]["ports"] == ["127.0.0.1:8005:8000", "192.168.100.10:6379:6379"]


def test_an_api_on_all_interfaces_without_a_key_is_warned_about(tmp_path):
    proj = project(tmp_path, overlay={"inventory/group_vars/pair.yml": "bind_address: 0.0.0.0"})
    cfg, _ = rendered(proj, "spark-a")
    warned = {(w.service, w.address, w.port, w.what) for w in exposure_warnings(cfg)}
    assert warned == {("app", "0.0.0.0", 8010, "api"), ("big", "0.0.0.0", 8005, "api")}
    assert "without an API key" in exposure_warnings(cfg)[0].text
    # a worker serves no API: nothing to warn about there
    worker, _ = rendered(proj, "spark-b")
    assert [w.service for w in exposure_warnings(worker)] == ["app"]


@pytest.mark.parametrize("key", ["services.big.flags.api-key=abc", "services.big.env.VLLM_API_KEY=abc",
                                 "services.big.secret_env.VLLM_API_KEY=big_key"])
def test_an_api_key_silences_the_warning_for_that_service(tmp_path, key):
    proj = project(tmp_path, overlay={"inventory/group_vars/pair.yml": "bind_address: '::'"})
    cfg = build_config(load_host_layers(proj, "spark-a", [key]))
    assert [w.service for w in exposure_warnings(cfg)] == ["app"]


def test_a_ray_head_on_all_interfaces_is_warned_about(tmp_path):
    proj = project(tmp_path, overlay={"inventory/group_vars/pair.yml": """
        services: {big: {placement: {addresses: {spark-a: 0.0.0.0}}}}"""})
    cfg, _ = rendered(proj, "spark-a")
    [warning] = exposure_warnings(cfg)
    assert (warning.what, warning.port) == ("ray", 6379) and "no authentication" in warning.text


def test_diff_prints_the_warning(tmp_path, monkeypatch, capsys):
    from tests.test_secret_scan import REPO

    host = FakeHost([("==sparkkit:docker==", preflight_text(None, [], inspect_json([])))])
    monkeypatch.setattr(connect, "executor_for", lambda cfg: host)
    monkeypatch.setenv("SPARKKIT_SECRET_SEARXNG_SECRET", "s3cret-value")
    args = ["diff", "rehearsal", "--project-dir", str(REPO), "-e", f"secrets_file={tmp_path / 'none.yml'}"]
    assert main(args) == 0
    assert "warning:" not in capsys.readouterr().err
    assert main([*args, "-e", "bind_address=0.0.0.0"]) == 0
    err = capsys.readouterr().err
    assert "warning: service searxng listens on all interfaces (0.0.0.0:8080) without an API key" in err
    assert err.count("warning: service") == 6  # every service of the rehearsal host


def test_the_report_lists_the_warnings():
    run = Verification(host="h", action="verify", release="r1", verdict=Verdict.VERIFIED, decision="verified",
                       exposure=["service x listens on all interfaces (0.0.0.0:1) without an API key: ..."])
    text = render_markdown(run, {})
    assert "## Exposure warnings" in text and "- WARNING: service x listens on all interfaces" in text
    assert run.to_json()["exposure"] == run.exposure
    quiet = render_markdown(Verification(host="h", action="verify", release="r1", verdict=Verdict.VERIFIED,
                                         decision="verified"), {})
    assert "Exposure" not in quiet

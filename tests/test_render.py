"""Rendering: golden files for the Spark, StrictUndefined, stable release ids, safe quoting."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sparkkit.cli.main import main
from sparkkit.inventory.build import build_config
from sparkkit.errors import InputError
from sparkkit.inventory.layers import load_host_layers
from sparkkit.release.render import render_release
from sparkkit.inventory.secrets import Secrets

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
SECRETS = Secrets({"searxng_secret": "golden-secret-value"})
KEY = b"k" * 32  # a host's release key


def render(host="spark", project=REPO, overrides=(), secrets=SECRETS, key=KEY):
    cfg = build_config(load_host_layers(project, host, list(overrides)))
    return cfg, render_release(cfg, secrets, project, key=key)


def copy_project(tmp_path) -> Path:
    for name in ("inventory", "roles", "templates"):
        shutil.copytree(REPO / name, tmp_path / name)
    return tmp_path


def check_golden(name: str, text: str):
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from the golden file (UPDATE_GOLDEN=1 after review)"


def test_spark_compose_golden():
    _, release = render()
    check_golden("spark-docker-compose.yml", release.file(release.compose_path).content.decode())


def test_spark_searxng_settings_golden():
    _, release = render()
    [settings] = [f for f in release.files if f.path.endswith("settings.yml")]
    text = settings.content.decode()
    check_golden("spark-searxng-settings.yml", text)
    data = yaml.safe_load(text)
    assert "json" in data["search"]["formats"]
    assert data["server"]["limiter"] is False
    assert "golden-secret-value" not in text  # the secret goes through the 0600 env file


def test_nemotron_production_flags():
    _, release = render()
    compose = yaml.safe_load(release.file(release.compose_path).content)
    nemo = compose["services"]["vllm-nemotron"]
    argv = nemo["command"]
    assert argv[:3] == ["vllm", "serve", "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4"]
    assert "--enforce-eager" in argv
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.35"
    assert argv[argv.index("--tool-call-parser") + 1] == "qwen3_coder"
    assert argv[argv.index("--reasoning-parser") + 1] == "nano_v3"
    assert "--enable-auto-tool-choice" in argv
    assert "--load-format" not in argv and "fastsafetensors" not in argv
    assert nemo["environment"]["VLLM_FLASHINFER_MOE_BACKEND"] == "latency"
    assert nemo["depends_on"] == {"vllm-annie": {"condition": "service_healthy"}}
    assert nemo["ipc"] == "host" and nemo["ulimits"]["memlock"] == -1
    assert nemo["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert nemo["restart"] == "unless-stopped"
    assert nemo["healthcheck"]["start_period"] == "900s"


def test_rehearsal_swaps_images_and_drops_gpu_only():
    _, spark = render("spark")
    _, rehearsal = render("rehearsal")
    s = yaml.safe_load(spark.file(spark.compose_path).content)["services"]
    r = yaml.safe_load(rehearsal.file(rehearsal.compose_path).content)["services"]
    assert set(s) == set(r) == {"vllm-annie", "vllm-nemotron", "ollama", "searxng", "context-engine",
                                "audio-pipeline"}
    for name in s:
        assert r[name]["image"].startswith("sparkkit-rehearsal-")
        assert "deploy" not in r[name]
        assert r[name].get("command") == s[name].get("command")
        assert r[name]["ports"] == s[name]["ports"]
        # the same environment, plus only the simulators' SIM_* settings
        rehearsal_env = {k: v for k, v in (r[name].get("environment") or {}).items() if not k.startswith("SIM_")}
        assert rehearsal_env == (s[name].get("environment") or {})


def test_release_id_is_stable_and_tracks_content():
    _, a = render()
    _, b = render()
    assert a.id == b.id
    _, c = render(overrides=["services.searxng.env.EXTRA=1"])
    assert c.id != a.id
    _, d = render(secrets=Secrets({"searxng_secret": "another"}))
    assert d.id != a.id


def test_secret_env_file_is_0600_and_masked_for_display():
    _, release = render()
    [env] = [f for f in release.files if f.secret]
    assert env.mode == 0o600
    assert env.content == b"SEARXNG_SECRET='golden-secret-value'\n"
    assert "golden-secret-value" not in env.display_text()


def test_unchanged_service_keeps_mount_path():
    _, a = render()
    _, b = render(overrides=["services.vllm-annie.env.X=1"])
    settings = lambda rel: [f.path for f in rel.files if f.path.endswith("settings.yml")][0]
    assert settings(a) == settings(b)
    _, c = render(overrides=["services.searxng.instance_name=other"])
    assert settings(c) != settings(a)


def test_hostile_values_are_quoted(tmp_path):
    hostile = "x; rm -rf / $(reboot) `id` ${HOME} 'q\" \n: {a: b}\n- item"
    project = copy_project(tmp_path)
    host_vars = project / "inventory" / "host_vars" / "spark.yml"
    data = yaml.safe_load(host_vars.read_text())
    one_line = hostile.replace("\n", " ")  # env values must be single lines (a line break is refused)
    data["services"] = {"context-engine": {"env": {"NOTE": one_line}, "command": [hostile]}}
    host_vars.write_text(yaml.safe_dump(data))
    _, release = render(project=project)
    compose = yaml.safe_load(release.file(release.compose_path).content)
    svc = compose["services"]["context-engine"]
    # `$` is doubled so compose does not interpolate; the YAML structure is unchanged
    assert svc["environment"]["NOTE"] == one_line.replace("$", "$$")
    assert svc["command"] == [hostile.replace("$", "$$")]
    assert set(svc) == set(yaml.safe_load(render()[1].file(render()[1].compose_path).content)["services"]
                           ["context-engine"]) | {"command"}


def test_undefined_variable_names_template_and_variable(tmp_path):
    project = copy_project(tmp_path)
    frag = project / "roles" / "searxng" / "templates" / "service.yml.j2"
    frag.write_text(frag.read_text() + "    labels: {{ svc.no_such_thing }}\n")
    with pytest.raises(InputError) as err:
        render(project=project)
    assert "roles/searxng/templates/service.yml.j2" in str(err.value)
    assert "no_such_thing" in str(err.value)


def test_template_syntax_error_names_file(tmp_path):
    project = copy_project(tmp_path)
    (project / "templates" / "docker-compose.yml.j2").write_text("services:\n{% for x in %}\n")
    with pytest.raises(InputError) as err:
        render(project=project)
    assert "templates/docker-compose.yml.j2" in str(err.value) and "line 2" in str(err.value)


def test_render_out_is_accepted_by_docker_compose(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKKIT_SECRET_SEARXNG_SECRET", "s3cr3t")
    out = tmp_path / "out"
    assert main(["render", "spark", "--project-dir", str(REPO), "--out", str(out)]) == 0
    assert (out / "env" / "searxng.env").stat().st_mode & 0o777 == 0o600
    compose = shutil.which("docker")
    assert compose, "docker CLI is required (the testbed installs it)"
    done = subprocess.run(["docker", "compose", "-f", str(out / "docker-compose.yml"), "config", "-q"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_render_out_creates_secret_files_0600_from_the_start(tmp_path, monkeypatch):
    """An env file holding a secret is never readable by others, not even between write and chmod;
    one left by an earlier render with wider bits is replaced, and no temporary file stays behind."""
    monkeypatch.setenv("SPARKKIT_SECRET_SEARXNG_SECRET", "s3cr3t")
    out = tmp_path / "out"
    stale = out / "env" / "searxng.env"
    stale.parent.mkdir(parents=True)
    stale.write_text("old\n")
    stale.chmod(0o644)
    opened: list[tuple[str, int]] = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):
        opened.append((os.fspath(path), mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    rc = main(["render", "spark", "--project-dir", str(REPO), "--out", str(out)])
    monkeypatch.setattr(os, "open", real_open)
    assert rc == 0
    env_modes = [mode for path, mode in opened if "searxng.env" in path]
    assert env_modes and all(mode == 0o600 for mode in env_modes), opened
    assert stale.stat().st_mode & 0o777 == 0o600
    assert "s3cr3t" in stale.read_text()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

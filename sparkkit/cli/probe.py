"""`sparkkit probe`: wire config, suites, tunnels and the runner together, print and save."""

from __future__ import annotations

import json
from urllib.parse import urlsplit
from datetime import datetime, timezone

from sparkkit.inventory.build import build_config
from sparkkit.inventory.model import accepting_new_host_key
from sparkkit.errors import InputError
from sparkkit.inventory.layers import load_host_layers
from sparkkit.probe import answers
from sparkkit.probe import client as http
from sparkkit.probe.limits import Breach, Result
from sparkkit.probe.report import render_probe
from sparkkit.probe.runner import Target, probe_service
from sparkkit.probe.suites import load_suites
from sparkkit.probe.targets import bind_of, make_target, needs_tunnel, targets_for
from sparkkit.inventory.address import http_url

URL_SUITES = ("standard", "multiturn", "tools", "mcp", "extraction")


def _first_model(base_url: str, timeout_s: float | None, say) -> str | None:
    with http.ProbeClient(base_url, timeout_s=min(timeout_s or 15, 15), connect_timeout_s=5) as client:
        rec = client.request("GET", "/v1/models")
    if not rec.ok:
        say(f"warning: {base_url}/v1/models: {rec.error}")
        return None
    try:
        return answers.first_model(rec.body)
    except Breach as exc:
        say(f"warning: {base_url}/v1/models: {exc.reason}")
        return None


def failed_requests(probes: list[dict]) -> int:
    return sum(1 for p in probes for res in p["results"] for r in res["records"]
               if not r.get("warmup") and not r.get("ok"))


def not_run_requests(probes: list[dict]) -> int:
    return sum(1 for p in probes for res in p["results"] for r in res["records"]
               if not r.get("warmup") and r.get("result") == Result.NOT_RUN.value)


def run_url(args, suites, say) -> tuple[str, list[dict]]:
    base = args.url.rstrip("/")
    try:
        parts = urlsplit(base)
        good = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port or IPv6 address
        good = False
    if not good:
        raise InputError(f"expected an http:// or https:// URL, got {args.url!r}", key="--url")
    if base.endswith("/v1"):
        base = base[:-3]
    model = args.model or _first_model(base, args.timeout, say)
    if model is None:
        say(f"warning: {base}/v1/models named no model; sending requests without one")
    names = [args.suite] if args.suite else [n for n in URL_SUITES if n in suites]
    target = Target(service="endpoint", base_url=base, model=model, suites=tuple(names), health_path="/v1/models",
                    metrics_path="/metrics")
    return base, [probe_service(target, suites, out=say, timeout_s=args.timeout)]


def run_host(args, suites, say) -> tuple[str, list[dict]]:
    from sparkkit.host.connect import executor_for

    cfg = build_config(load_host_layers(args.project_dir, args.host, args.extra_vars, args.inventory))
    chosen = targets_for(cfg, suites, service=args.service, suite=args.suite)
    if not chosen:
        raise InputError(f"no service of {cfg.name} runs suite {args.suite!r}", key="--suite")
    if args.accept_new_host_key:
        cfg = accepting_new_host_key(cfg)
    probes = []
    ex = executor_for(cfg)
    try:
        for svc, names in chosen:
            tunnel = needs_tunnel(cfg, svc)
            if tunnel:
                base = f"http://127.0.0.1:{ex.forward(svc.port, bind_of(cfg, svc))}"
            else:
                base = http_url(cfg.ssh.address, svc.port)
            say(f"{cfg.name}: probing {svc.name} at {base}{' (SSH tunnel)' if tunnel else ''}: {', '.join(names)}")
            probes.append(probe_service(make_target(svc, names, base), suites, out=say, timeout_s=args.timeout))
    finally:
        for notice in ex.notices:
            say(notice)
        ex.close()
    return cfg.name, probes


def _mask_of(args):
    """``probe HOST`` masks the host's secrets where they are set for the run (it reads no preflight,
    so not the host's env files); ``--url`` knows no secrets."""
    if not args.host:
        return lambda text: text
    from sparkkit.inventory.secrets import load_secrets

    cfg = build_config(load_host_layers(args.project_dir, args.host, args.extra_vars, args.inventory))
    return load_secrets(cfg, missing=[]).mask


def run_probe(args, *, say) -> int:
    if bool(args.url) == bool(args.host):
        raise InputError("give either HOST or --url URL")
    if args.timeout is not None and not 0 < args.timeout <= 86_400:
        raise InputError(f"expected a positive number of seconds (at most 86400), got {args.timeout:g}",
                         key="--timeout")
    suites = load_suites(args.project_dir)
    if args.suite and args.suite not in suites:
        raise InputError(f"unknown suite {args.suite!r} (suites: {', '.join(sorted(suites))})", key="--suite")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    mask = _mask_of(args)
    say = (lambda text, _say=say: _say(mask(text)))
    where, probes = run_url(args, suites, say) if args.url else run_host(args, suites, say)
    print(mask(render_probe(probes)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(mask(json.dumps({"target": where, "started": started, "probes": probes}, indent=1,
                                             ensure_ascii=False)))
        say(f"records written to {args.json}")
    bad = failed_requests(probes)
    if bad:
        skipped = not_run_requests(probes)
        say(f"{bad} measured request(s) failed" + (f" ({skipped} of them not run)" if skipped else ""))
        return 1
    return 0

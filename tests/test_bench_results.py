"""bench/results.py: bench.json (as bench/run.py and bench/fleet_bench.py write it) -> bench/RESULTS.md."""

from __future__ import annotations

import json

from bench.results import BEGIN, END, main, splice

# the shape bench/run.py writes (trimmed to a few rows; numbers from a real run)
BENCH = {
    "when": "2026-11-27T12:25:00+00:00",
    "machine": "x86_64, 2 cores, Linux-6.1-x86_64-with-glibc2.36",
    "overhead": [
        {"case": "no-op redeploy", "sparkkit_s": 0.83, "sparkkit_cli_s": 1.28, "baseline_s": 1.63, "ratio": 0.51,
         "round_trips": 2, "ssh_connections": 1, "target": "<= 0.5 s and <= 1.5x",
         "stages": {"render": 0.12, "connect": 0.47, "preflight": 0.27, "audit": 0.01}},
        {"case": "no-op, channel per command", "sparkkit_s": 1.21, "sparkkit_cli_s": None, "baseline_s": 1.97,
         "ratio": 0.61, "round_trips": 2, "ssh_connections": 1, "target": "(comparison)"},
        {"case": "one service changed", "sparkkit_s": 4.12, "sparkkit_cli_s": None, "baseline_s": 3.02,
         "ratio": 1.36, "round_trips": 13, "ssh_connections": 1, "target": "<= 1.5x"},
    ],
    "changed_deploy_stages": {"preflight": {"seconds": 0.31, "round_trips": 1},
                              "compose up": {"seconds": 1.43, "round_trips": 1},
                              "health wait": {"seconds": 2.32, "round_trips": 6}},
    "verdict": [{"stage": "probes", "seconds": 30.1, "round_trips": 0, "kind": "waiting on services"},
                {"stage": "total", "seconds": 34.7, "round_trips": 20, "kind": "1 SSH connection(s), verdict PASS"}],
    "fidelity": [{"truth_ttft_ms": 50, "ttft_p50_ms": 51.76, "ttft_err_ms": 1.76, "kit_client_ms": 0.4,
                  "truth_tok_s": 200, "decode_p50_tok_s": 200.02, "decode_err_pct": 0.01, "tokens": "60-60",
                  "ok": "10/10", "ttft_target": "met", "decode_target": "met"}],
    "capacity": [{"client": "asyncio", "via": "container", "sim_tok_s": 5000, "concurrency": 256,
                  "requests_ok": 1759, "failed": 0, "tok_s": 13225, "client_cpu_ms_per_req": 1.94,
                  "added_ttft_ms": None, "note": "target 256 streams served: met"}],
}
FLEET = {"when": "2026-11-27T12:40:00+00:00", "machine": "x86_64", "cpus": 2, "rows": {
    "1 host, first deploy": {"hosts": 1, "exit": 0, "wall_s": 6.6, "slowest_host_s": 6.1, "median_host_s": 6.1,
                             "sum_hosts_s": 6.1, "verdict": "PASS — 1/1 hosts passed"},
    "8 hosts in parallel, first deploy": {"hosts": 8, "exit": 0, "wall_s": 29.6, "slowest_host_s": 28.9,
                                          "median_host_s": 25.0, "sum_hosts_s": 201.3,
                                          "verdict": "PASS — 8/8 hosts passed"}}}


def _write(tmp_path, bench=BENCH, fleet=FLEET):
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    if fleet is not None:
        (tmp_path / "bench-fleet.json").write_text(json.dumps(fleet))
    return ["--bench", str(tmp_path / "bench.json"), "--fleet", str(tmp_path / "bench-fleet.json"),
            "--out", str(tmp_path / "RESULTS.md")]


def test_every_table_is_written_from_bench_json(tmp_path):
    assert main(_write(tmp_path)) == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "## Latest run: 2026-11-27T12:25:00+00:00" in text
    assert "x86_64, 2 cores" in text
    for heading in ("### 1. Kit overhead", "### 2. Measurement fidelity", "### 3. Probe client capacity",
                    "### 4. Time to verdict", "### 5. Fleet"):
        assert heading in text
    assert "| no-op redeploy " in text and "| 0.83 s " in text and "| 0.51x " in text
    assert "Stages of one no-op redeploy: render 0.12 s, connect 0.47 s, preflight 0.27 s, audit 0.01 s." in text
    assert "| health wait | 2.32 s " in text
    assert "| total " in text and "verdict PASS" in text
    assert "| true TTFT ms " in text and "| 1.76 " in text
    assert "| streams " in text and "| 256 " in text and "target 256 streams served: met" in text
    assert "| 8 hosts in parallel, first deploy " in text and "| 29.6 s " in text and "| 6.8x " in text
    # a None in bench.json reads "-", never "None"
    assert "None" not in text


def test_fleet_part_is_optional(tmp_path):
    assert main(_write(tmp_path, fleet=None)) == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert "### 4. Time to verdict" in text and "### 5. Fleet" not in text


def test_sections_missing_from_bench_json_are_left_out(tmp_path):
    partial = {k: BENCH[k] for k in ("when", "machine", "overhead")}
    assert main(_write(tmp_path, bench=partial, fleet=None)) == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert "### 1. Kit overhead" in text
    assert "### 2." not in text and "### 3." not in text and "### 4." not in text


def test_unknown_row_layout_shows_every_field(tmp_path):
    bench = {**BENCH, "capacity": [{"clients": 3, "something_new_ms": 1.5}]}
    assert main(_write(tmp_path, bench=bench, fleet=None)) == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| clients " in text and "something_new_ms" in text and "1.5" in text


def test_text_outside_the_markers_is_kept_and_a_rerun_is_stable(tmp_path):
    args = _write(tmp_path)
    out = tmp_path / "RESULTS.md"
    out.write_text(f"# Benchmark results\n\nintro by hand\n\n{BEGIN}\nold tables\n{END}\n\n## History\n\nkept\n")
    assert main(args) == 0
    first = out.read_text()
    assert first.startswith("# Benchmark results\n\nintro by hand\n\n" + BEGIN)
    assert first.endswith(f"{END}\n\n## History\n\nkept\n")
    assert "old tables" not in first
    assert main(args) == 0
    assert out.read_text() == first


def test_no_markers_yet_puts_the_tables_on_top(tmp_path):
    assert splice("## History\n", "tables") == f"{BEGIN}\n\ntables\n\n{END}\n\n## History\n"
    assert splice(None, "tables").startswith("# Benchmark results\n\n" + BEGIN)


def test_no_bench_json_is_an_error(tmp_path, capsys):
    assert main(["--bench", str(tmp_path / "missing.json"), "--out", str(tmp_path / "RESULTS.md")]) == 1
    assert "make bench" in capsys.readouterr().err
    assert not (tmp_path / "RESULTS.md").exists()


def test_the_repository_results_file_has_the_markers_and_the_history():
    from bench.results import REPO

    text = (REPO / "bench" / "RESULTS.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert text.index(END) < text.index("## History")

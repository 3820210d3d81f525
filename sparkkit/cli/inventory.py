"""``sparkkit inventory``: the inventory as ``ansible-inventory --list`` / ``--host H`` print it
(JSON, the same shape, so the two can be diffed), and ``--host H --explain KEY``: the file and
line each value under KEY came from. Reads files only; bad input is exit 2 naming the file."""

from __future__ import annotations

from pathlib import Path

from sparkkit.inventory.export import dump, explain, host_vars_json, list_json
from sparkkit.inventory.hostvars import VarsFiles
from sparkkit.inventory.layers import host_raw, load_host_layers, load_project_inventory


def add_parser(sub, common_options) -> None:
    p = sub.add_parser("inventory", help="print the inventory as ansible-inventory --list/--host does (JSON), "
                                         "or where a host's value comes from (--explain)",
                       description="Print the inventory as `ansible-inventory --list` or `--host HOST` prints it "
                                   "(values as written, templates not evaluated), so the two can be diffed. "
                                   "--host HOST --explain KEY names the file and line that set each value under "
                                   "KEY (a dotted path), its evaluated value, and the settings it overrides.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="every group and host, with each host's variables")
    what.add_argument("--host", metavar="HOST", help="one host's variables")
    p.add_argument("--explain", metavar="KEY", help="with --host: where each value under KEY comes from")
    common_options(p)


def run_inventory(args, say) -> int:
    project = Path(args.project_dir)
    sources = [Path(s) for s in args.inventory]
    if args.explain and not args.host:
        say("error: --explain needs --host HOST")
        return 2
    if args.list:
        inv = load_project_inventory(project, sources)
        files = VarsFiles(inv)
        hostvars = {h: host_vars_json(host_raw(inv, files, h, args.extra_vars), mark_unsafe=True) for h in inv.hosts}
        print(dump(list_json(inv, hostvars)))
        return 0
    layers = load_host_layers(project, args.host, args.extra_vars, sources)
    if args.explain:
        inv = load_project_inventory(project, sources)
        print("\n".join(explain(inv, VarsFiles(inv), args.host, layers.node, layers.merged(), args.explain,
                                     dict(layers.failures))))
        return 0
    print(dump(host_vars_json(layers.node, mark_unsafe=False)))
    return 0

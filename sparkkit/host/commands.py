"""Remote commands as data: each function returns an argv list. Nothing here runs anything.

Remote shell scripts are constants that read their inputs from positional parameters
(``sh -c SCRIPT sh ARG...``), so inventory values are only ever passed as quoted arguments.
"""

from __future__ import annotations

import shlex

SECTION = "==sparkkit:{}=="
LIVE_FILE = "live.txt"  # in releases/<id>/: per service, the config hash and image it ran with when it went live


def _sh(script: str, *args: str) -> list[str]:
    return ["sh", "-c", script, "sh", *[str(a) for a in args]]


def chain(*argvs: list[str]) -> list[str]:
    """Several commands in one round trip, each quoted as an argv; each runs only if those before
    it succeeded."""
    return ["sh", "-c", " && ".join(shlex.join(a) for a in argvs)]


def section(name: str) -> str:
    """The shell line that marks where section ``name`` of a script's output starts."""
    return f'echo "{SECTION.format(name)}"'


_CONTAINERS = """
ids=$(docker ps -aq --filter "label=com.docker.compose.project=$2")
if [ -n "$ids" ]; then docker inspect $ids; else echo "[]"; fi
"""

# The slow parts (each docker CLI call is a process start and an API call, 0.05-0.3 s apiece)
# run at once as background jobs, each into its own file; the sections are printed in order
# after `wait`. `docker info` (the slowest) runs only when the runtimes matter (a GPU host).
PREFLIGHT_SCRIPT = f"""
root="$1"; project="$2"; runtimes="$3"; shift 3
t=$(mktemp -d "${{TMPDIR:-/tmp}}/sparkkit-preflight.XXXXXX") || exit 1
trap 'rm -rf "$t"' EXIT
docker version --format '{{{{.Server.Version}}}}' > "$t/docker" 2>&1 || echo "ERROR" >> "$t/docker" &
docker compose version --short > "$t/compose" 2>&1 || echo "ERROR" >> "$t/compose" &
if [ "$runtimes" = "1" ]; then
  {{ docker info --format '{{{{json .Runtimes}}}}' 2>/dev/null || echo "{{}}"; }} > "$t/runtimes" &
else
  echo "{{}}" > "$t/runtimes"
fi
n=0
for i in "$@"; do
  n=$((n + 1))
  {{ if id=$(docker image inspect --format '{{{{.Id}}}}' -- "$i" 2>/dev/null); then echo "present $i $id"; \
     else echo "missing $i"; fi; }} > "$t/image.$n" &
done
{{ {_CONTAINERS.strip().replace('$2', '$project')}
}} > "$t/containers" &
live=""; cur=$(readlink "$root/current" 2>/dev/null) && live="$root/releases/${{cur##*/}}/{LIVE_FILE}"
if [ -f "$live" ]; then
  m=0
  for i in $(cut -d " " -f 3 "$live" | sort -u); do
    for j in "$@"; do [ "$i" != "$j" ] || continue 2; done  # images the deploy named: inspected above
    m=$((m + 1))
    {{ id=$(docker image inspect --format '{{{{.Id}}}}' -- "$i" 2>/dev/null) && echo "present $i $id"; }} \
      > "$t/current_image.$m" &
  done
fi
{section("disk")}
d="$root"; while [ ! -d "$d" ]; do d=$(dirname "$d"); done; df -Pk "$d" | tail -n 1
{section("ports")}
cat /proc/net/tcp /proc/net/tcp6 2>/dev/null
{section("current")}
readlink "$root/current" 2>/dev/null || true
{section("releases")}
ls -1t "$root/releases" 2>/dev/null | while read -r r; do [ -f "$root/releases/$r/release.json" ] && echo "$r"; done
{section("audit")}
tail -n 200 "$root/audit.log" 2>/dev/null || true
{section("release-key")}
key="$root/release.key"
if [ ! -s "$key" ] && mkdir -p "$root" 2>/dev/null; then
  new_key="$root/.release.key.$$"
  ( umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > "$new_key" ) && ln "$new_key" "$key" 2>/dev/null
  rm -f "$new_key"
fi
cat "$key" 2>/dev/null || true
echo
{section("secret-values")}
cat "$root"/releases/*/env/*.env 2>/dev/null | sort -u
wait
{section("docker")}
cat "$t/docker"
{section("compose")}
cat "$t/compose"
{section("runtimes")}
cat "$t/runtimes"
{section("images")}
k=0; while [ "$k" -lt "$n" ]; do k=$((k + 1)); cat "$t/image.$k"; done
{section("containers")}
cat "$t/containers"
{section("current_live")}
[ ! -f "$live" ] || cat "$live"
{section("current_images")}
cat "$t"/current_image.* 2>/dev/null
{section("end")}
"""


def preflight(root: str, project: str, images: list[str], *, runtimes: bool = True) -> list[str]:
    """Everything a deploy decides on, in one round trip. ``runtimes``: ask Docker for its
    runtimes (slow; only a GPU host needs them). Beside it, what the current release says each
    service runs (for drift): its record (``record_live``) and the ids its image tags name now.
    Also the host's release key (``<root>/release.key``, 32 random bytes, created 0600 on first
    use, linked into place so two runs agree on one) that keys the release id, and the values in
    the kept releases' env files, which the kit only masks."""
    return _sh(PREFLIGHT_SCRIPT, root, project, "1" if runtimes else "0", *images)


def containers(project: str) -> list[str]:
    """``docker inspect`` of every container of the compose project (JSON array)."""
    return _sh(_CONTAINERS, "", project)


LOCK_SCRIPT = """
root="$1"; info="$2"; breaking="$3"
mkdir -p "$root" || exit 3
if [ "$breaking" = "*" ]; then rm -rf "$root/lock"
elif [ -n "$breaking" ] && grep -qF -- "$breaking" "$root/lock/info.json" 2>/dev/null; then rm -rf "$root/lock"; fi
if mkdir "$root/lock" 2>/dev/null; then
  printf '%s\\n' "$info" > "$root/lock/info.json"
  echo ACQUIRED
else
  echo HELD
  cat "$root/lock/info.json" 2>/dev/null || true
fi
"""


def acquire_lock(root: str, info_json: str, *, break_lock: bool, stale_token: str = "") -> list[str]:
    """Take the lock; ``break_lock`` removes any holder, ``stale_token`` only the holder with that token
    (a lock left by a run that is known to be dead, so two runs cannot both break a live one)."""
    return _sh(LOCK_SCRIPT, root, info_json, "*" if break_lock else stale_token)


UNLOCK_SCRIPT = """
root="$1"; token="$2"
if grep -qF -- "$token" "$root/lock/info.json" 2>/dev/null; then rm -rf "$root/lock"; fi
"""


def release_lock(root: str, token: str) -> list[str]:
    return _sh(UNLOCK_SCRIPT, root, token)


# Take the lock and, only once it is ours, read (the preflight) in the same round trip: the lock's
# answer under section "lock", then what the second command printed. Each command comes as one
# argument, an argv quoted by shlex.join, so no inventory value becomes shell syntax.
LOCKED_SCRIPT = f"""
{section("lock")}
r=$(sh -c "$1") || exit $?
printf '%s\\n' "$r"
case "$r" in ACQUIRED*) sh -c "$2" ;; esac
"""


def locked(lock_argv: list[str], then_argv: list[str]) -> list[str]:
    """``lock_argv`` (``acquire_lock``), then ``then_argv`` only when the lock was acquired."""
    return _sh(LOCKED_SCRIPT, shlex.join(lock_argv), shlex.join(then_argv))


# A closing round trip: the attempt's audit line, then the lock released even when the line could
# not be written (then AUDIT-FAILED is printed); the exit status is the unlock's. Each is safe to
# repeat (the audit append skips a line already there, the unlock removes only this run's lock).
CLOSING_SCRIPT = """
sh -c "$1" || echo AUDIT-FAILED
sh -c "$2"
"""


def closing(audit_argv: list[str], unlock_argv: list[str]) -> list[str]:
    return _sh(CLOSING_SCRIPT, shlex.join(audit_argv), shlex.join(unlock_argv))


INSTALL_SCRIPT = """
set -e
root="$1"; id="$2"
stage="$root/.staging/$id"
rm -rf "$stage"; mkdir -p "$stage" "$root/releases" "$root/files"
base64 -d | tar -xzf - -C "$stage"
if [ -d "$stage/files" ]; then cp -Rp "$stage/files/." "$root/files/"; fi
rm -rf "$root/releases/$id"
mv "$stage/releases/$id" "$root/releases/$id"
touch "$root/releases/$id"
rm -rf "$stage"
"""


def install_release(root: str, release_id: str) -> list[str]:
    """Unpack a base64 tar.gz from stdin into ``releases/<id>`` (and ``files/``)."""
    return _sh(INSTALL_SCRIPT, root, release_id)


SWITCH_SCRIPT = """
set -e
root="$1"; id="$2"
touch "$root/releases/$id"
ln -sfn "releases/$id" "$root/.current.tmp"
mv -T "$root/.current.tmp" "$root/current"
"""


def switch_current(root: str, release_id: str) -> list[str]:
    return _sh(SWITCH_SCRIPT, root, release_id)


RECORD_LIVE_SCRIPT = f"""
set -e
f="$1/releases/$2/{LIVE_FILE}"; shift 2
: > "$f.tmp"
while [ "$#" -ge 3 ]; do printf '%s %s %s\\n' "$1" "$2" "$3" >> "$f.tmp"; shift 3; done
mv "$f.tmp" "$f"
"""


def record_live(root: str, release_id: str, services: list[tuple[str, str, str]]) -> list[str]:
    """Write what a release's services run once it is up: one ``service config-hash image`` line each
    (the hash compose labelled the container with after `compose up` of the release's file), so drift
    can be judged later against what the release says rather than what compose would print."""
    return _sh(RECORD_LIVE_SCRIPT, root, release_id, *[v for row in services for v in row])


AUDIT_SCRIPT = """
root="$1"; line="$2"
mkdir -p "$root" || exit 1
grep -qxF -- "$line" "$root/audit.log" 2>/dev/null && exit 0
printf '%s\\n' "$line" >> "$root/audit.log"
"""


def clear_current(root: str) -> list[str]:
    """No release is live any more (a first release stopped after failing its gates)."""
    return ["rm", "-f", f"{root}/current"]


def append_audit(root: str, line: str) -> list[str]:
    return _sh(AUDIT_SCRIPT, root, line)


PRUNE_SCRIPT = """
root="$1"; shift
for id in "$@"; do rm -rf "$root/releases/$id"; done
"""


def prune_releases(root: str, ids: list[str]) -> list[str]:
    return _sh(PRUNE_SCRIPT, root, *ids)


READ_RELEASE_SCRIPT = """
root="$1"; id="$2"
cat "$root/releases/$id/release.json" 2>/dev/null || exit 4
"""


def read_manifest(root: str, release_id: str) -> list[str]:
    return _sh(READ_RELEASE_SCRIPT, root, release_id)


CAT_FILES_SCRIPT = """
root="$1"; shift
for f in "$@"; do echo "==sparkkit:file:$f=="; base64 < "$root/$f" 2>/dev/null || echo "!missing"; done
"""


def cat_files(root: str, paths: list[str]) -> list[str]:
    return _sh(CAT_FILES_SCRIPT, root, *paths)


def audit_tail(root: str, lines: int) -> list[str]:
    return ["tail", "-n", str(lines), f"{root}/audit.log"]


def compose(project: str, compose_file: str, *args: str) -> list[str]:
    return ["docker", "compose", "-p", project, "-f", compose_file, *args]


def compose_up(project: str, compose_file: str, services: list[str], *, remove_orphans: bool) -> list[str]:
    extra = ["--remove-orphans"] if remove_orphans else []
    return compose(project, compose_file, "up", "-d", "--no-deps", *extra, *services)


HASHED_UP_SCRIPT = f"""
project="$1"; file="$2"; nimg="$3"; shift 3
t=$(mktemp -d "${{TMPDIR:-/tmp}}/sparkkit-up.XXXXXX") || exit 1
trap 'rm -rf "$t"' EXIT
docker compose -p "$project" -f "$file" config --hash '*' > "$t/hashes" 2>/dev/null &
k=0
for i in "$@"; do
  [ "$k" -lt "$nimg" ] || break
  k=$((k + 1))
  {{ id=$(docker image inspect --format '{{{{.Id}}}}' -- "$i" 2>/dev/null) && echo "$i $id"; }} > "$t/image.$k" &
done
shift "$nimg"
docker compose -p "$project" -f "$file" up -d --no-deps "$@"
rc=$?
wait
{section("hashes")}
cat "$t/hashes"
{section("images")}
cat "$t"/image.* 2>/dev/null
exit $rc
"""


def compose_up_hashed(project: str, compose_file: str, services: list[str], *, remove_orphans: bool,
                      images: list[str]) -> list[str]:
    """``compose_up``, and meanwhile (hidden behind it) the config hash compose gives each service
    of the file and the id of each image as the host has it now: what tells a later wave whose
    services would not change apart from one that must be started."""
    extra = ["--remove-orphans"] if remove_orphans else []
    return _sh(HASHED_UP_SCRIPT, project, compose_file, str(len(images)), *images, *extra, *services)


def compose_down(project: str, compose_file: str, *, timeout_s: int = 30) -> list[str]:
    return compose(project, compose_file, "down", "--timeout", str(timeout_s))


def compose_logs(project: str, compose_file: str, service: str, *, tail: int = 30) -> list[str]:
    return compose(project, compose_file, "logs", "--no-color", "--tail", str(tail), service)


def ensure_images(images: list[str]) -> list[str]:
    """Pull each image that is not present; stop at the first that cannot be had."""
    script = ('for i in "$@"; do docker image inspect -- "$i" >/dev/null 2>&1 && continue; '
              'echo "pulling $i"; docker pull -q -- "$i" >/dev/null || { echo "cannot pull $i" >&2; exit 1; }; done')
    return _sh(script, *images)


def stop_project(project: str) -> list[str]:
    """Stop and remove the project's containers when no release file is at hand."""
    script = ('ids=$(docker ps -aq --filter "label=com.docker.compose.project=$1"); '
              '[ -z "$ids" ] || docker rm -f $ids >/dev/null')
    return _sh(script, project)


CRASH_LOGS_SCRIPT = """
project="$1"; since="$2"; tail="$3"; nonce="$4"
for id in $(docker ps -aq --filter "label=com.docker.compose.project=$project"); do
  svc=$(docker inspect --format '{{index .Config.Labels "com.docker.compose.service"}}' "$id")
  echo "==sparkkit:logs:$nonce:$svc=="
  docker logs --since "$since" --tail "$tail" "$id" 2>&1
done
"""


def crash_logs(project: str, since_iso: str, *, nonce: str, tail: int = 400) -> list[str]:
    """Each service's log lines since ``since_iso`` (stdout and stderr), under a marker per service
    that carries ``nonce`` (fresh for each run), so a container cannot forge one in its output."""
    return _sh(CRASH_LOGS_SCRIPT, project, since_iso, str(tail), nonce)


READ_RESULTS_SCRIPT = """
root="$1"
id=$(cat "$root/results/last-pass" 2>/dev/null) || exit 0
echo "$id"
cat "$root/results/$id.json" 2>/dev/null || true
"""


def read_last_pass(root: str) -> list[str]:
    """The last release that passed its gates on this host, then its results JSON."""
    return _sh(READ_RESULTS_SCRIPT, root)


WRITE_RESULTS_SCRIPT = """
set -e
root="$1"; id="$2"; passed="$3"
mkdir -p "$root/results"
cat > "$root/results/$id.json.tmp"
mv "$root/results/$id.json.tmp" "$root/results/$id.json"
if [ "$passed" = "1" ]; then printf '%s\\n' "$id" > "$root/results/last-pass.tmp"; mv "$root/results/last-pass.tmp" "$root/results/last-pass"; fi
"""


def write_results(root: str, release_id: str, *, passed: bool) -> list[str]:
    """Store a verification's results (JSON on stdin) next to the releases; mark it the last pass."""
    return _sh(WRITE_RESULTS_SCRIPT, root, release_id, "1" if passed else "0")

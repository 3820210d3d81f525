#!/usr/bin/env python3
"""Build the sparkkit rehearsal images offline (no registry needed).

1. sparkkit-rehearsal-base:latest -- a minimal root filesystem assembled from the
   host's own Debian python3.11 (binary, its shared libraries, the stdlib minus
   tests/GUI/build bits) plus /bin/sh (dash), streamed as a tar into `docker import`.
2. sparkkit-rehearsal-{vllm,ollama,searxng,app}:latest -- `docker build` FROM that
   base with the tiny Dockerfiles and stand-in servers in testbed/image/.

Every image carries the label sparkkit.inputs=<hash of its inputs>; an image whose
label already matches is not rebuilt, so a no-change run only hashes and inspects.

Usage: build_images.py [--force]     (run from anywhere; paths are absolute)
"""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
IMAGE_SRC = os.path.join(HERE, "image")
BUILD_DIR = os.path.join(REPO, ".testbed", "build")

PREFIX = "sparkkit-rehearsal"
BASE = f"{PREFIX}-base:latest"
SERVICES = ("vllm", "ollama", "searxng", "app")
# Images whose Dockerfile lives in a subfolder of image/ (so they never change the hashes above):
# image name suffix -> that subfolder. vllm-ray: the vLLM simulator plus a Ray simulator.
EXTRA = {"vllm-ray": "ray"}
LABEL = "sparkkit.inputs"

PYTHON = "/usr/bin/python3.11"
STDLIB = "/usr/lib/python3.11"
SHELL = "/usr/bin/dash"
# Stdlib parts a headless server never needs (config-3.11-* is the 25 MB static lib).
STDLIB_SKIP = {"test", "idlelib", "tkinter", "ensurepip", "turtledemo", "lib2to3",
               "__pycache__", "config-3.11-x86_64-linux-gnu"}
# dlopen()ed by glibc (pthread_exit/cancel unwinding), invisible to ldd.
EXTRA_LIBS = ["/usr/lib/x86_64-linux-gnu/libgcc_s.so.1"]

BASE_ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
]
# Small generated files: arcname -> (mode, content).
GENERATED = {
    "etc/passwd": (0o644, "root:x:0:0:root:/root:/bin/sh\n"
                          "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
    "etc/group": (0o644, "root:x:0:\nnogroup:x:65534:\n"),
    "etc/nsswitch.conf": (0o644, "passwd: files\ngroup: files\nhosts: files dns\n"),
}
DIRS = {  # arcname -> mode
    "etc": 0o755, "tmp": 0o1777, "root": 0o700, "dev": 0o755, "proc": 0o555,
    "sys": 0o555, "run": 0o755, "var": 0o755, "var/tmp": 0o1777,
    "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "usr/lib": 0o755,
    "usr/lib64": 0o755, "usr/local": 0o755, "usr/local/bin": 0o755,
    "usr/local/lib": 0o755,
}
USRMERGE_LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}


def log(msg):
    print(f"  images: {msg}", flush=True)


def canonical(path):
    """Resolve the directories of path (usrmerge: /lib -> /usr/lib) but not its last part."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def shared_libs(binaries):
    """Every library ldd names for the given binaries (one ldd call)."""
    out = subprocess.run(["ldd", *binaries], capture_output=True, text=True).stdout
    libs = set()
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libs.add(target)
        elif parts and parts[0].startswith("/") and not parts[0].endswith(":"):
            libs.add(parts[0])  # the dynamic loader
    return sorted(libs)


def rootfs_entries():
    """Sorted list of (arcname, kind, source) with kind in file/link/dir."""
    entries = {}

    def add_file(path):
        """Add a host file at its canonical path, plus the symlink chain leading to it."""
        path = canonical(path)
        while os.path.islink(path):
            entries[path.lstrip("/")] = ("link", os.readlink(path))
            path = canonical(os.path.join(os.path.dirname(path), os.readlink(path)))
        entries[path.lstrip("/")] = ("file", path)

    for name, mode in DIRS.items():
        entries[name] = ("dir", mode)
    for name, target in USRMERGE_LINKS.items():
        entries[name] = ("link", target)
    for name in GENERATED:
        entries[name] = ("generated", name)

    dynload = os.path.join(STDLIB, "lib-dynload")
    sos = sorted(os.path.join(dynload, f) for f in os.listdir(dynload) if f.endswith(".so"))
    for path in [PYTHON, SHELL] + shared_libs([PYTHON, SHELL] + sos) + EXTRA_LIBS:
        add_file(path)
    entries["usr/bin/python3"] = ("link", "python3.11")
    entries["usr/bin/sh"] = ("link", "dash")

    for dirpath, dirnames, filenames in os.walk(STDLIB):
        dirnames[:] = sorted(d for d in dirnames if d not in STDLIB_SKIP)
        rel = dirpath.lstrip("/")
        entries[rel] = ("dir", 0o755)
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                # keep links that stay inside the stdlib (e.g. _sysconfigdata alias);
                # drop ones leaving it (Debian's sitecustomize.py -> /etc/python3.11)
                target = os.path.realpath(path)
                if target.startswith(STDLIB + "/") and os.path.exists(target):
                    entries[f"{rel}/{name}"] = ("link", os.readlink(path))
                continue
            entries[f"{rel}/{name}"] = ("file", path)
    for name in list(entries):  # make every parent directory explicit
        parent = os.path.dirname(name)
        while parent and parent not in entries:
            entries[parent] = ("dir", 0o755)
            parent = os.path.dirname(parent)
    return sorted((name, kind, src) for name, (kind, src) in entries.items())


def base_hash(entries):
    h = hashlib.sha256()
    with open(__file__, "rb") as fh:
        h.update(fh.read())
    for name, kind, src in entries:
        h.update(f"{name}\0{kind}\0{src}\0".encode())
        if kind == "file":
            st = os.stat(src)
            h.update(f"{st.st_size}\0{st.st_mtime_ns}\0{st.st_mode}\n".encode())
    return h.hexdigest()[:16]


def service_hash(base_label, service):
    h = hashlib.sha256(base_label.encode())
    for name in sorted(os.listdir(IMAGE_SRC)):
        path = os.path.join(IMAGE_SRC, name)
        if os.path.isfile(path) and not name.endswith((".pyc", "~")):
            with open(path, "rb") as fh:
                h.update(f"{name}\0".encode() + fh.read())
    h.update(service.encode())
    return h.hexdigest()[:16]


def extra_hash(base_label, service):
    h = hashlib.sha256(service_hash(base_label, service).encode())
    folder = os.path.join(IMAGE_SRC, EXTRA[service])
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                h.update(f"{name}\0".encode() + fh.read())
    return h.hexdigest()[:16]


def current_labels(images):
    """image -> value of the sparkkit.inputs label (None when the image is missing)."""
    proc = subprocess.run(["docker", "image", "inspect", *images],
                          capture_output=True, text=True)
    found = {}
    for info in json.loads(proc.stdout or "[]"):
        labels = (info.get("Config") or {}).get("Labels") or {}
        for tag in info.get("RepoTags") or []:
            found[tag] = labels.get(LABEL)
    return {image: found.get(image) for image in images}


def write_rootfs_tar(entries, fileobj):
    def info(name, kind):
        ti = tarfile.TarInfo(name)
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        ti.mtime = 0
        ti.type = {"dir": tarfile.DIRTYPE, "link": tarfile.SYMTYPE}.get(kind, tarfile.REGTYPE)
        return ti

    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, src in entries:
            ti = info(name, kind)
            if kind == "dir":
                ti.mode = src
                tar.addfile(ti)
            elif kind == "link":
                ti.linkname = src
                ti.mode = 0o777
                tar.addfile(ti)
            elif kind == "generated":
                mode, content = GENERATED[src]
                data = content.encode()
                ti.mode, ti.size = mode, len(data)
                tar.addfile(ti, io.BytesIO(data))
            else:
                st = os.stat(src)
                ti.mode, ti.size, ti.mtime = st.st_mode & 0o7777, st.st_size, int(st.st_mtime)
                with open(src, "rb") as fh:
                    tar.addfile(ti, fh)


def build_base(entries, label):
    changes = [f"LABEL {LABEL}={label}"] + [f"ENV {e}" for e in BASE_ENV] + \
              ['CMD ["/usr/bin/python3"]']
    cmd = ["docker", "import"]
    for change in changes:
        cmd += ["--change", change]
    proc = subprocess.Popen(cmd + ["-", BASE], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    write_rootfs_tar(entries, proc.stdin)
    proc.stdin.close()
    if proc.wait() != 0:
        sys.exit("docker import of the base image failed")


def build_service(service, label, dockerfile=None):
    # Stage the context so file modes do not depend on the checkout.
    ctx = os.path.join(BUILD_DIR, "context")
    shutil.rmtree(ctx, ignore_errors=True)
    shutil.copytree(IMAGE_SRC, ctx, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in os.listdir(ctx):
        os.chmod(os.path.join(ctx, name), 0o755 if name in SERVICES else 0o644)
    image = f"{PREFIX}-{service}:latest"
    env = dict(os.environ, DOCKER_BUILDKIT="0")  # legacy builder: offline, no buildx needed
    logfile = os.path.join(BUILD_DIR, f"build-{service}.log")
    with open(logfile, "w") as out:
        rc = subprocess.run(
            ["docker", "build", "--label", f"{LABEL}={label}", "-t", image,
             "-f", os.path.join(ctx, dockerfile or f"Dockerfile.{service}"), ctx],
            stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        with open(logfile) as fh:
            sys.stderr.write(fh.read())
        sys.exit(f"docker build of {image} failed (log: {logfile})")


def main():
    force = "--force" in sys.argv[1:]
    for path in (PYTHON, STDLIB, SHELL):
        if not os.path.exists(path):
            sys.exit(f"{path} missing on this host; the rehearsal images are built from "
                     "the host's Debian python3.11 (apt-get install python3.11)")
    os.makedirs(BUILD_DIR, exist_ok=True)
    t0 = time.monotonic()
    entries = rootfs_entries()
    blabel = base_hash(entries)
    images = [BASE] + [f"{PREFIX}-{s}:latest" for s in (*SERVICES, *EXTRA)]
    labels = current_labels(images)
    built = []

    if force or labels[BASE] != blabel:
        log(f"building {BASE} from the host's python3.11 ({len(entries)} entries)")
        build_base(entries, blabel)
        built.append(BASE)
    for service in SERVICES:
        image = f"{PREFIX}-{service}:latest"
        slabel = service_hash(blabel, service)
        if force or BASE in built or labels[image] != slabel:
            log(f"building {image}")
            build_service(service, slabel)
            built.append(image)
    for service, folder in EXTRA.items():
        image = f"{PREFIX}-{service}:latest"
        slabel = extra_hash(blabel, service)
        if force or BASE in built or labels[image] != slabel:
            log(f"building {image}")
            build_service(service, slabel, dockerfile=os.path.join(folder, "Dockerfile"))
            built.append(image)
    if built:
        # drop the superseded (now untagged) versions; images still used by containers stay
        subprocess.run(["docker", "image", "prune", "-f", "--filter", f"label={LABEL}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log(f"built {len(built)} image(s) in {time.monotonic() - t0:.1f}s")
    else:
        log(f"up to date ({time.monotonic() - t0:.1f}s)")


if __name__ == "__main__":
    main()

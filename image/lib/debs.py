"""Debian packages for the image and the QEMU test guest, without root.

Packages are fetched with `apt-get download` (the host's apt lists; no root, no network beyond
the Debian registry) into a cache directory, verified against the SHA256 that apt's lists give,
and extracted with `dpkg-deb -x`. Every package that lands in an output is recorded (name,
version, sha256 of the .deb) for the build manifest.

Also a command line for qemu/build-guest:
    python3 image/lib/debs.py kernel --cache DIR   prints "KROOT KVER PACKAGE VERSION"
"""

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys

ARCH_LIBDIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "usr/lib64",
                "lib", "usr/lib")


class DebError(RuntimeError):
    pass


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE, **kw).stdout


class Debs:
    """A cache of downloaded and extracted Debian packages (candidate versions from apt)."""

    def __init__(self, cache, log=None):
        self.cache = os.path.abspath(cache)
        self.log = log or (lambda msg: print(f"debs: {msg}", file=sys.stderr))
        self.used = {}  # name -> {"version", "arch", "sha256", "filename"}
        self._roots = {}  # name -> extracted root
        os.makedirs(self.cache, exist_ok=True)

    def _show(self, name):
        """apt's candidate record for NAME: Version, Architecture, Filename, SHA256."""
        try:
            text = run(["apt-cache", "show", "--no-all-versions", name], stderr=subprocess.PIPE)
        except subprocess.CalledProcessError as e:
            raise DebError(f"apt-cache show {name} failed ({e.stderr.strip()}); the apt lists "
                           "may be missing: run `apt-get update` (as root) once") from None
        rec = {}
        for line in text.splitlines():
            if not line.strip():
                break  # first stanza = the candidate
            m = re.match(r"^(Package|Version|Architecture|Filename|SHA256): (.*)$", line)
            if m:
                rec[m.group(1)] = m.group(2)
        if "Filename" not in rec:
            raise DebError(f"no candidate for package {name}: run `apt-get update` (as root)")
        return rec

    def fetch(self, name):
        """Download NAME (candidate version) into the cache; returns the .deb's path."""
        rec = self._show(name)
        deb = os.path.join(self.cache, os.path.basename(rec["Filename"]))
        if not (os.path.exists(deb) and sha256_file(deb) == rec["SHA256"]):
            self.log(f"downloading {name} {rec['Version']}")
            tmp = os.path.join(self.cache, ".download")
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            # apt-get download writes into the current directory. As root, apt warns that its
            # sandbox user _apt cannot write there and downloads unsandboxed: harmless.
            p = subprocess.run(["apt-get", "download", "-q", f"{name}={rec['Version']}"],
                               cwd=tmp, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            got = [f for f in os.listdir(tmp) if f.endswith(".deb")]
            if p.returncode != 0 or len(got) != 1:
                raise DebError(f"apt-get download {name}={rec['Version']} failed:\n{p.stdout}"
                               "\n(if the version is gone from the mirror, run `apt-get update`)")
            os.replace(os.path.join(tmp, got[0]), deb)
            shutil.rmtree(tmp, ignore_errors=True)
            if sha256_file(deb) != rec["SHA256"]:
                raise DebError(f"{deb}: SHA256 differs from apt's lists")
        self.used[rec["Package"]] = {"version": rec["Version"], "arch": rec["Architecture"],
                                     "sha256": rec["SHA256"], "filename": os.path.basename(deb)}
        return deb

    def root(self, name):
        """Download and extract NAME; returns the directory it is extracted into."""
        if name in self._roots:
            return self._roots[name]
        deb = self.fetch(name)
        ver = self.used[name]["version"]
        root = os.path.join(self.cache, "root", f"{name}_{ver.replace(':', '%')}")
        marker = root + ".done"
        if not os.path.exists(marker):
            shutil.rmtree(root, ignore_errors=True)
            os.makedirs(root)
            run(["dpkg-deb", "-x", deb, root])
            open(marker, "w").close()
        self._roots[name] = root
        return root

    def manifest(self):
        return [dict(name=n, **self.used[n]) for n in sorted(self.used)]

    # --- shared libraries -------------------------------------------------------------------

    def find_lib(self, soname):
        """(package, path) of SONAME among the packages extracted so far, else None."""
        for pkg in sorted(self._roots):
            for d in ARCH_LIBDIRS:
                p = os.path.join(self._roots[pkg], d, soname)
                if os.path.lexists(p):
                    return pkg, p
        return None

    def lib_package(self, soname):
        """The Debian package that ships SONAME, from the host's dpkg database (read only; what
        `dpkg -S` answers, from one pass over dpkg's file lists instead of one per library)."""
        if not hasattr(self, "_lib_index"):
            self._lib_index = {}
            info = "/var/lib/dpkg/info"
            for name in sorted(os.listdir(info)) if os.path.isdir(info) else []:
                if not name.endswith(".list"):
                    continue
                pkg = name[:-5].split(":")[0]
                with open(os.path.join(info, name), errors="replace") as f:
                    for line in f:
                        if "/x86_64-linux-gnu/" in line:
                            self._lib_index.setdefault(os.path.basename(line.rstrip("\n")), pkg)
        return self._lib_index.get(soname)

    def resolve_lib(self, soname, hint_pkgs=()):
        """(package, path) of SONAME: already extracted, else the host's dpkg says which package
        ships it, else a package among the Depends of HINT_PKGS (the programs' packages)."""
        found = self.find_lib(soname)
        if found:
            return found
        pkg = self.lib_package(soname)
        if pkg:
            self.root(pkg)
            found = self.find_lib(soname)
            if found:
                return found
        for hint in hint_pkgs:  # not installed on this host: walk the Depends
            for dep in depends(hint):
                self.root(dep)
                found = self.find_lib(soname)
                if found:
                    return found
        raise DebError(f"no package found that ships {soname}")


def depends(pkg):
    out = run(["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
               "--no-breaks", "--no-replaces", "--no-enhances", pkg])
    return [m.group(1) for m in re.finditer(r"^\s+(?:\|)?(?:Pre)?Depends: ([^<>\s]+)$", out,
                                            re.M)]


def needed(path):
    """The DT_NEEDED sonames of an ELF file (empty for static executables and scripts)."""
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return []
    out = run(["readelf", "-d", "-W", path], stderr=subprocess.DEVNULL)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def interpreter(path):
    out = run(["readelf", "-l", "-W", path], stderr=subprocess.DEVNULL)
    m = re.search(r"Requesting program interpreter: ([^\]]+)\]", out)
    return m.group(1) if m else None


# --- the kernel ---------------------------------------------------------------------------


def kernel_package():
    """linux-image-amd64's current image package, e.g. linux-image-6.1.0-57-amd64."""
    for dep in depends("linux-image-amd64"):
        if re.match(r"linux-image-\d", dep):
            return dep
    raise DebError("cannot resolve linux-image-amd64 (run `apt-get update` as root once)")


def kernel(debs):
    """Download and extract the kernel; depmod the tree. Returns (root, kver, package)."""
    pkg = kernel_package()
    root = debs.root(pkg)
    kvers = sorted(os.listdir(os.path.join(root, "lib/modules")))
    if len(kvers) != 1:
        raise DebError(f"expected one kernel in {pkg}, found {kvers}")
    kver = kvers[0]
    if not os.path.exists(os.path.join(root, "lib/modules", kver, "modules.dep")):
        run(["depmod", "-b", root, kver])
    return root, kver, pkg


def module_closure(kroot, kver, names):
    """Paths (relative to the tree root, e.g. lib/modules/KVER/kernel/fs/ext4/ext4.ko) of NAMES
    and everything they need, dependencies and soft dependencies (crc32c for ext4) first, in
    load order, each once. Built-in modules are skipped."""
    order = []
    for name in names:
        p = subprocess.run(["modprobe", "-d", kroot, "-S", kver, "--show-depends", name],
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=dict(os.environ, LC_ALL="C"))
        if p.returncode != 0:
            raise DebError(f"kernel module {name}: {p.stderr.strip()}")
        for line in p.stdout.splitlines():
            f = line.split()
            if f and f[0] == "insmod":
                rel = os.path.relpath(f[1], kroot)
                if rel not in order:
                    order.append(rel)
    return order


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kernel", help="download + extract linux-image-amd64, print root kver")
    k.add_argument("--cache", required=True)
    args = ap.parse_args(argv)
    try:
        debs = Debs(args.cache)
        root, kver, pkg = kernel(debs)
    except (DebError, subprocess.CalledProcessError) as e:
        print(f"debs: error: {e}", file=sys.stderr)
        return 1
    print(root, kver, pkg, debs.used[pkg]["version"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

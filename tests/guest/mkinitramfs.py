#!/usr/bin/env python3
"""Builds a small initramfs for test guests: busybox-static, kernel modules with their
dependencies (resolved from modules.dep), and an init script.

    mkinitramfs.py --out FILE.cpio.gz [--kernel-version VER] [--modules NAME,...]
                   [--init SCRIPT] [--add SRC:DST ...]

The generated /init mounts /proc, /sys and /dev, installs busybox's applets, loads the
modules (dependencies first), then runs SCRIPT (copied to /init.d/main) with busybox sh.
The archive (newc cpio, gzip) is deterministic: the same inputs give the same bytes,
and an unchanged output is not rewritten. Modules may be stored compressed (.ko.xz,
.ko.gz, .ko.zst); they go into the archive uncompressed, so busybox insmod loads them.
The default kernel version is the stock kernel's (stock_kernel(): the newest
/boot/vmlinuz-* whose modules are installed).

From Python (tests/nested/kvmrig.py builds its outer guest this way):

    build_initramfs(out, kernel_version, modules=["9p"], init_text="...")
"""
import argparse
import gzip
import io
import os
import pathlib
import re
import shutil
import subprocess
import sys

BUSYBOX = pathlib.Path("/bin/busybox")

INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
for m in {modules}; do
    insmod /lib/modules/$m || echo "init: insmod $m failed"
done
if [ -f /init.d/main ]; then
    exec sh /init.d/main
fi
echo "init: no /init.d/main"
exec sh
"""


class Cpio:
    """newc-format cpio writer with fixed inode numbers and timestamps."""

    def __init__(self):
        self.out = io.BytesIO()
        self.ino = 1

    def _entry(self, name, mode, data=b"", nlink=1):
        name_b = name.encode() + b"\0"
        header = "070701" + "".join(f"{v:08x}" for v in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name_b), 0))
        self.ino += 1
        self.out.write(header.encode() + name_b)
        self.out.write(b"\0" * ((4 - (110 + len(name_b)) % 4) % 4))
        self.out.write(data)
        self.out.write(b"\0" * ((4 - len(data) % 4) % 4))

    def dir(self, name):
        self._entry(name, 0o040755, nlink=2)

    def file(self, name, data, mode=0o644):
        self._entry(name, 0o100000 | mode, data)

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def _version_key(version):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", version)]


def stock_kernel():
    """(path of /boot/vmlinuz-VER, VER) for the newest kernel in /boot whose modules are
    installed under /lib/modules/VER; None when there is none."""
    found = []
    for vmlinuz in pathlib.Path("/boot").glob("vmlinuz-*"):
        version = vmlinuz.name[len("vmlinuz-"):]
        if (pathlib.Path("/lib/modules") / version / "modules.dep").exists():
            found.append((_version_key(version), vmlinuz, version))
    if not found:
        return None
    _, vmlinuz, version = max(found)
    return vmlinuz, version


def _module_bytes(path):
    """A module file's contents, uncompressed (busybox insmod wants plain ELF)."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        import lzma
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        zstd = shutil.which("zstd")
        if not zstd:
            raise SystemExit(f"mkinitramfs: {path} is zstd-compressed and zstd is not installed")
        return subprocess.run([zstd, "-dc", str(path)], check=True, capture_output=True).stdout
    return data


def module_paths(kver, names):
    """Module names -> paths under /lib/modules/KVER, dependencies first; modules built
    into the kernel are skipped."""
    base = pathlib.Path("/lib/modules") / kver
    deps = {}
    for line in (base / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {}
    for path in deps:
        stem = pathlib.Path(path).name.split(".ko")[0].replace("-", "_")
        by_name[stem] = path
    builtin = set()
    builtin_file = base / "modules.builtin"
    if builtin_file.exists():
        builtin = {pathlib.Path(p).name.split(".ko")[0].replace("-", "_")
                   for p in builtin_file.read_text().split()}
    order = []

    def visit(path):
        for dep in deps.get(path, []):
            visit(dep)
        if path not in order:
            order.append(path)

    for name in names:
        key = name.replace("-", "_")
        if key in builtin:
            continue
        if key not in by_name:
            raise SystemExit(f"mkinitramfs: no module '{name}' for kernel {kver}")
        visit(by_name[key])
    return base, order


def build_initramfs(out, kernel_version=None, modules=(), init=None, init_text=None,
                    add=()):
    """Writes the archive to OUT (only when its bytes change) and returns OUT as a Path.
    MODULES: names (dependencies are added); INIT: path of the script run as
    /init.d/main, or INIT_TEXT: its text; ADD: (source path, destination) pairs."""
    if not BUSYBOX.exists():
        raise SystemExit("mkinitramfs: /bin/busybox is missing (install busybox-static)")
    if init is not None and init_text is not None:
        raise ValueError("give init or init_text, not both")
    cpio = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "run", "etc", "lib", "lib/modules",
              "init.d", "root"):
        cpio.dir(d)
    cpio.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    names = [m for m in modules if m]
    loaded = []
    if names:
        if kernel_version is None:
            stock = stock_kernel()
            if stock is None:
                raise SystemExit("mkinitramfs: no kernel with modules in /boot "
                                 "(install linux-image-amd64)")
            kernel_version = stock[1]
        base, paths = module_paths(kernel_version, names)
        for p in paths:
            name = pathlib.Path(p).name.split(".ko")[0] + ".ko"
            cpio.file(f"lib/modules/{name}", _module_bytes(base / p))
            loaded.append(name)
    cpio.file("init", INIT.format(modules=" ".join(loaded)).encode(), 0o755)
    if init is not None:
        cpio.file("init.d/main", pathlib.Path(init).read_bytes(), 0o755)
    elif init_text is not None:
        cpio.file("init.d/main", init_text.encode(), 0o755)
    for src, dst in add:
        cpio.file(dst.lstrip("/"), pathlib.Path(src).read_bytes(), 0o755)
    data = gzip.compress(cpio.finish(), mtime=0)
    out = pathlib.Path(out)
    if not out.exists() or out.read_bytes() != data:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, out)
    return out


def build(args):
    adds = []
    for spec in args.add or []:
        src, _, dst = spec.partition(":")
        if not dst:
            raise SystemExit(f"mkinitramfs: --add wants SRC:DST, not '{spec}'")
        adds.append((src, dst))
    return build_initramfs(args.out, args.kernel_version,
                           (args.modules or "").split(","), init=args.init, add=adds)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--kernel-version", help="default: the stock kernel's (see stock_kernel)")
    ap.add_argument("--modules")
    ap.add_argument("--init")
    ap.add_argument("--add", action="append")
    args = ap.parse_args()
    print(build(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Builds a small initramfs for test guests: busybox-static, kernel modules with their
dependencies (resolved from modules.dep), and an init script.

    mkinitramfs.py --out FILE.cpio.gz [--kernel-version VER] [--modules NAME,...]
                   [--init SCRIPT] [--add SRC:DST ...]

The generated /init mounts /proc, /sys and /dev, installs busybox's applets, loads the
modules (dependencies first), then runs SCRIPT (copied to /init.d/main) with busybox sh.
The archive (newc cpio, gzip) is deterministic: the same inputs give the same bytes,
and an unchanged output is not rewritten.
"""
import argparse
import gzip
import io
import os
import pathlib
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


def build(args):
    if not BUSYBOX.exists():
        raise SystemExit("mkinitramfs: /bin/busybox is missing (install busybox-static)")
    cpio = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "run", "etc", "lib", "lib/modules",
              "init.d", "root"):
        cpio.dir(d)
    cpio.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    names = [m for m in (args.modules or "").split(",") if m]
    loaded = []
    if names:
        base, paths = module_paths(args.kernel_version, names)
        for p in paths:
            data = (base / p).read_bytes()
            if p.endswith(".xz"):
                import lzma
                data = lzma.decompress(data)
            name = pathlib.Path(p).name.split(".ko")[0] + ".ko"
            cpio.file(f"lib/modules/{name}", data)
            loaded.append(name)
    cpio.file("init", INIT.format(modules=" ".join(loaded)).encode(), 0o755)
    if args.init:
        cpio.file("init.d/main", pathlib.Path(args.init).read_bytes(), 0o755)
    for spec in args.add or []:
        src, _, dst = spec.partition(":")
        if not dst:
            raise SystemExit(f"mkinitramfs: --add wants SRC:DST, not '{spec}'")
        cpio.file(dst.lstrip("/"), pathlib.Path(src).read_bytes(), 0o755)
    data = gzip.compress(cpio.finish(), mtime=0)
    out = pathlib.Path(args.out)
    if not out.exists() or out.read_bytes() != data:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, out)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--kernel-version", default=sorted(os.listdir("/lib/modules"))[-1]
                    if os.path.isdir("/lib/modules") else None)
    ap.add_argument("--modules")
    ap.add_argument("--init")
    ap.add_argument("--add", action="append")
    args = ap.parse_args()
    print(build(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

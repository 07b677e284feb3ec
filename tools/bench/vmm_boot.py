#!/usr/bin/env python3
"""conduit-vmm against QEMU/KVM: boot time and resident memory overhead (issue 3).

Runs in the nested rig (tests/nested/kvmrig.py: an outer QEMU TCG guest with a working
/dev/kvm; this machine's own /dev/kvm cannot boot a stock kernel). In ONE outer-guest
run, the same stock kernel, busybox initramfs and command line are booted N times by
each VMM, alternating (conduit-vmm, qemu, conduit-vmm, ...), so that drift on this
shared machine hits both alike.

    flock /tmp/conduit-rig.lock tools/bench/vmm_boot.sh [--rounds N] [--json FILE]

What is measured, per boot (by this same script, run with --inner inside the outer
guest, so that no shell forks sit between the events and their timestamps):

- boot time: from just before the VMM process is started to the moment its console
  (serial on stdout, a pipe read with select()) delivers the first line of the guest's
  init. The line also carries the guest's /proc/uptime, which splits the time into the
  part before the guest kernel's clock started (VMM setup, and for QEMU its firmware)
  and the kernel's own boot.
- resident overhead: the VMM process's resident memory that is not guest RAM. Both VMMs
  get their guest RAM from a memfd (conduit-vmm always; QEMU through
  `-object memory-backend-memfd,share=on -machine memory-backend=`), so touched guest
  pages are counted in RssShmem and everything else the process holds (heap, stacks,
  its binary and libraries as mapped) in RssAnon + RssFile. Overhead = VmRSS - RssShmem
  = RssAnon + RssFile, sampled from /proc/PID/status while the guest sits idle after its
  first line (a few samples, the largest kept). Kernel memory KVM uses for the VM (vCPU
  state, shadow page tables) is not in any process's RSS and not counted.

QEMU's setup is made comparable: `-M pc` with KVM (`-enable-kvm -cpu host`),
`-nodefaults -no-user-config -display none`, the console on `-serial stdio`, the same
vCPUs, RAM, kernel, initrd and command line. It still boots through its firmware
(SeaBIOS and the linuxboot option ROM) where conduit-vmm enters the kernel directly:
that is part of what is compared.

Everything runs emulated (TCG outside, KVM with shadow paging inside): absolute times
mean nothing, only the ratio between the two VMMs within one run does.
"""
import argparse
import datetime
import json
import os
import pathlib
import re
import select
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time

TOP = pathlib.Path(__file__).resolve().parents[2]
VMM = TOP / "build" / "release" / "vmm" / "conduit-vmm"
MARKER = "BOOTBENCH-UP"
# The guest's init: its first line carries the guest kernel's uptime (and its taint
# flags: a warning during boot shows there), then it idles
# (busybox sleep: the vCPU halts) until the VMM is stopped. After the memory samples,
# a tainted guest names its kernel warnings (which `quiet` kept off the console), and
# every guest ends with DONE_MARKER.
DONE_MARKER = "BOOTBENCH-DONE"
GUEST_INIT = f"""echo "{MARKER} uptime=$(cut -d' ' -f1 /proc/uptime) tainted=$(cat /proc/sys/kernel/tainted)"
sleep 6
[ "$(cat /proc/sys/kernel/tainted)" = 0 ] || dmesg | grep -m3 'WARNING:'
echo {DONE_MARKER}
exec sleep 100000
"""
CMDLINE = "console=ttyS0 quiet panic=-1"
BOOT_LIMIT = 300      # seconds for one boot to its first line, nested on a loaded machine
IDLE_BEFORE_SAMPLING = 2.0   # seconds after the first line before memory is sampled
SAMPLES, SAMPLE_INTERVAL = 4, 0.5


def vmm_command(which, kernel, initrd, cpus, memory_mib):
    if which == "conduit-vmm":
        return [str(VMM), "--kernel", kernel, "--initrd", initrd, "--cmdline", CMDLINE,
                "--cpus", str(cpus), "--memory", f"{memory_mib}M", "--serial", "stdio"]
    return ["qemu-system-x86_64", "-enable-kvm", "-cpu", "host",
            "-M", "pc,memory-backend=ram", "-smp", str(cpus), "-m", f"{memory_mib}M",
            "-object", f"memory-backend-memfd,id=ram,size={memory_mib}M,share=on",
            "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
            "-kernel", kernel, "-initrd", initrd, "-append", CMDLINE]


def status_kib(pid):
    """VmRSS, RssAnon, RssFile, RssShmem of PID in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0])
    return fields


def boot_once(which, kernel, initrd, cpus, memory_mib, log_path):
    """Boots one VM, waits for init's first line, samples memory, stops the VM.
    Returns a dict of what was measured; 'error' says why when it failed."""
    cmd = vmm_command(which, kernel, initrd, cpus, memory_mib)
    log = open(log_path, "wb")
    log.write((shlex.join(cmd) + "\n").encode())
    log.flush()
    start, start_wall = time.monotonic(), time.time()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=log)
    result = {"vmm": which}
    console = b""
    first_line = None
    try:
        # Read the console as it comes; note each line's arrival (for diagnosis).
        while first_line is None:
            left = start + BOOT_LIMIT - time.monotonic()
            if left <= 0:
                result["error"] = f"no '{MARKER}' line within {BOOT_LIMIT} s"
                break
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            now = time.monotonic()
            if not chunk:
                result["error"] = f"{which} exited ({proc.wait()}) before '{MARKER}'"
                break
            console += chunk
            # The serial port delivers a byte at a time: the line's time is when its
            # marker has arrived, its uptime is read once the whole line is there.
            text = console.decode(errors="replace")
            if "boot_s" not in result and MARKER in text:
                result["boot_s"] = now - start
            for line in text.split("\n")[:-1]:  # complete lines only
                if line.startswith(MARKER):
                    first_line = line
                    fields = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
                    result["guest_uptime_s"] = float(fields["uptime"])
                    result["tainted"] = fields.get("tainted", "?")
                    break
        if first_line is not None:
            time.sleep(IDLE_BEFORE_SAMPLING)
            samples = []
            for _ in range(SAMPLES):
                samples.append(status_kib(proc.pid))
                time.sleep(SAMPLE_INTERVAL)
            worst = max(samples, key=lambda s: s["RssAnon"] + s["RssFile"])
            result.update({k.lower() + "_kib": v for k, v in worst.items()})
            result["overhead_kib"] = worst["RssAnon"] + worst["RssFile"]
            if proc.poll() is not None:
                result["error"] = f"{which} exited ({proc.returncode}) while sampled"
            else:
                # Not timed: what the guest says after the samples (see GUEST_INIT).
                deadline = time.monotonic() + 60
                while DONE_MARKER.encode() not in console and time.monotonic() < deadline:
                    if select.select([proc.stdout], [], [], 1)[0]:
                        chunk = os.read(proc.stdout.fileno(), 65536)
                        if not chunk:
                            break
                        console += chunk
                warnings = [l.strip() for l in console.decode(errors="replace").splitlines()
                            if "WARNING:" in l]
                if warnings:
                    result["guest_warnings"] = warnings
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Drain what is left of the console so the log has it all.
        try:
            console += proc.stdout.read()
        except OSError:
            pass
        log.write(b"--- console\n" + console)
        log.close()
    if which == "conduit-vmm":
        # Its setup: from the start to its log line saying the VM is assembled (just
        # before the vCPUs run). Log lines carry the local time of day, to the ms.
        for line in log_path.read_text(errors="replace").splitlines():
            hit = re.match(r"(\d\d):(\d\d):(\d\d\.\d+) conduit-vmm\[.*\] info: vm: .*vCPU\(s\)",
                         line)
            if hit:
                h, m, sec = hit.groups()
                day = time.localtime(start_wall)
                logged = time.mktime(day[:3] + (int(h), int(m), 0) + day[6:]) + float(sec)
                result["vmm_setup_s"] = round(logged - start_wall, 3)
                break
    return result


def inner(args):
    """Inside the outer guest: N alternating rounds; one JSON line per boot."""
    order = ["conduit-vmm", "qemu"]
    for rnd in range(args.rounds):
        for which in (order if rnd % 2 == 0 else order[::-1]):
            name = f"{which}-{rnd + 1}"
            r = boot_once(which, args.kernel, args.initrd, args.cpus, args.memory_mib,
                          pathlib.Path(args.out) / f"{name}.log")
            r["round"] = rnd + 1
            print("BOOT " + json.dumps(r), flush=True)


def median(values):
    return statistics.median(values) if values else float("nan")


def summarize(boots):
    """Medians per VMM and the ratios, as Markdown."""
    rows, med = [], {}
    for which in ("conduit-vmm", "qemu"):
        ok = [b for b in boots if b["vmm"] == which and "error" not in b]
        med[which] = {
            "n": len(ok),
            "boot_s": median([b["boot_s"] for b in ok]),
            "pre_kernel_s": median([b["boot_s"] - b["guest_uptime_s"] for b in ok]),
            "uptime_s": median([b["guest_uptime_s"] for b in ok]),
            "overhead_mib": median([b["overhead_kib"] / 1024 for b in ok]),
            "anon_mib": median([b["rssanon_kib"] / 1024 for b in ok]),
            "file_mib": median([b["rssfile_kib"] / 1024 for b in ok]),
            "shmem_mib": median([b["rssshmem_kib"] / 1024 for b in ok]),
        }
    for which, m in med.items():
        rows.append(f"| {which} | {m['n']} | {m['boot_s']:.1f} s | {m['pre_kernel_s']:.1f} s | "
                    f"{m['uptime_s']:.1f} s | {m['overhead_mib']:.1f} MiB | "
                    f"{m['anon_mib']:.1f} / {m['file_mib']:.1f} MiB | {m['shmem_mib']:.0f} MiB |")
    c, q = med["conduit-vmm"], med["qemu"]
    table = "\n".join([
        "| VMM | boots | boot to init's first line (median) | before the guest clock starts "
        "| guest uptime at that line | resident overhead (median) | RssAnon / RssFile "
        "| guest RAM resident (RssShmem) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", *rows])
    setup = median([b["vmm_setup_s"] for b in boots if "vmm_setup_s" in b])
    ratios = (f"conduit-vmm / QEMU: boot time {c['boot_s'] / q['boot_s']:.2f}, "
              f"resident overhead {c['overhead_mib'] / q['overhead_mib']:.2f}\n"
              f"conduit-vmm's own setup (start to its vCPUs running), median: {setup:.2f} s")
    return table, ratios, med


def outer(args):
    """On the host: boots the outer guest, runs the rounds inside it, prints results."""
    sys.path.insert(0, str(TOP / "tests" / "nested"))
    import kvmrig  # noqa: E402  (tests/nested: the nested KVM rig)
    if not VMM.exists():
        sys.exit(f"{VMM} is missing: build first (ninja -C build/release)")
    kernel = str(kvmrig.stock_kernel()[0])
    work = pathlib.Path(tempfile.mkdtemp(prefix="vmm-boot-bench-"))
    initrd = kvmrig.build_initramfs(work / "guest.cpio.gz", init_text=GUEST_INIT)
    host = kvmrig.NestedKvm(work / "rig")
    started = time.monotonic()
    try:
        host.boot()
        print(f"[bench] {host.facts()}", flush=True)
        script = (f"/usr/bin/python3 {shlex.quote(str(pathlib.Path(__file__).resolve()))} "
                  f"--inner --rounds {args.rounds} --cpus {args.cpus} "
                  f"--memory-mib {args.memory_mib} --kernel {shlex.quote(kernel)} "
                  f"--initrd guest.cpio.gz --out .\n")
        r = host.run(script, timeout=args.rounds * 2 * (BOOT_LIMIT + 60) + 120,
                     files={"guest.cpio.gz": initrd})
    finally:
        host.close()
    boots = [json.loads(l[5:]) for l in r.stdout.splitlines() if l.startswith("BOOT ")]
    for b in boots:
        print(f"[bench] {json.dumps(b)}")
    failed = [b for b in boots if "error" in b]
    complete = r.returncode == 0 and not failed and len(boots) == 2 * args.rounds
    if not complete:
        print(r.describe(), file=sys.stderr)
    # The boots that worked are summarized even when others failed (the table's
    # `boots` column says how many each median stands on).
    table, ratios, med = summarize(boots)
    print(f"\n{table}\n\n{ratios}")
    if not complete:
        sys.exit(f"[bench] the run failed: {len(failed)} boots failed, "
                 f"{len(boots)} of {2 * args.rounds} reported; logs in {r.workdir}")
    print(f"\n[bench] {time.monotonic() - started:.0f} s in all; logs in {r.workdir}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({
            "date": datetime.date.today().isoformat(), "rig": host.facts(),
            "rounds": args.rounds, "cpus": args.cpus, "memory_mib": args.memory_mib,
            "cmdline": CMDLINE, "qemu": vmm_command("qemu", kernel, "guest.cpio.gz",
                                                     args.cpus, args.memory_mib),
            "boots": boots, "medians": med}, indent=1) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="boots per VMM (default 3)")
    p.add_argument("--cpus", type=int, default=1, help="vCPUs per VM (default 1)")
    p.add_argument("--memory-mib", type=int, default=256, help="guest RAM (default 256)")
    p.add_argument("--json", help="also write every figure to this file")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--kernel", help=argparse.SUPPRESS)
    p.add_argument("--initrd", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    (inner if args.inner else outer)(args)


if __name__ == "__main__":
    main()

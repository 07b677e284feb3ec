"""KVM hosts for tests: run a bash script where /dev/kvm really works, and get back its
exit status, output and timings.

Two hosts share one API:

- NestedKvm: an outer QEMU guest under TCG (`-machine q35 -cpu max`, whose emulated AMD
  SVM gives the stock Debian kernel a working /dev/kvm). It boots once and runs any
  number of scripts. The host's root is shared read-only over 9p and the guest chroots
  into it, so the script sees the host's binaries, libraries, build tree and kernel
  modules; a per-session work directory is shared writable and has the same path inside.
- DirectKvm: this machine's own /dev/kvm, when it can run a stock kernel
  (direct_kvm_problem() says why not otherwise).

Every script runs through rig_run.sh in fresh namespaces (mount, PID, network, IPC,
UTS): its own /run, /tmp, /dev/shm and hugetlbfs, loopback only, and nothing it
started survives it. So runs do not see each other even inside one outer guest.

    host = NestedKvm(workdir)             # or DirectKvm(workdir)
    r = host.run("dpdk-testpmd ...", timeout=300, files={"cfg.yaml": text})
    r.assert_ok()                         # or look at r.returncode, r.stdout, ...
    host.close()
"""
import ctypes
import dataclasses
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
TOP = HERE.parents[1]
RUNNER = HERE / "rig_run.sh"
OUTER_INIT = HERE / "outer_init.sh"
sys.path.insert(0, str(TOP / "tests" / "guest"))
import mkinitramfs  # noqa: E402  (tests/guest, shared with the integration suite)
import kvmprobe  # noqa: E402

stock_kernel = mkinitramfs.stock_kernel
build_initramfs = mkinitramfs.build_initramfs

# What the outer guest loads before it can reach the host's files and offer /dev/kvm;
# mkinitramfs adds the dependencies (virtio, virtio_ring, 9pnet, netfs, fscache, kvm,
# irqbypass, ccp) from modules.dep. Anything else a script wants it can modprobe: the
# host's /lib/modules holds the outer kernel's modules.
OUTER_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "kvm_amd")
NAMESPACES = ["unshare", "--mount", "--pid", "--net", "--ipc", "--uts", "--fork",
              "--kill-child", "--mount-proc", "--propagation", "private"]
KILL_GRACE = 10  # seconds between timeout's TERM and its KILL
# Shadow paging in the outer guest's KVM. With nested paging (npt=1), QEMU 7.2's TCG
# emulation of it broke when two inner VMs ran at once: in 3 of 10 rounds the outer
# kernel panicked ("corrupted stack end detected inside scheduler"), an inner QEMU
# exited early or an inner guest never booted. With npt=0, 20 of 20 inner boots in
# pairs completed (docs/testing.md). Inner guests boot about half as fast.
KVM_AMD_OPTIONS = "npt=0"


def _die_with_parent():
    """Runs in the child before exec: a killed test run must not leave a TCG guest
    burning this shared machine's cores."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class RigError(Exception):
    """The host could not run the script at all (the outer guest did not boot, died or
    stopped answering). The message carries the reason and the console's last lines."""


# How many times a run is repeated on a fresh outer guest after the outer kernel crashed
# under it. TCG's SVM emulation crashes the outer kernel now and then (a stack overflow in
# its exception entry right after VMRUN: in four CI runs it hit the same scenario three
# times, once twice in a row), which says nothing about what runs inside; three crashes
# in a row fail the run.
OUTER_CRASH_REPEATS = 2


# How many times a boot that stalled (QEMU still running, the outer guest not ready
# within boot_timeout) is tried again on a fresh QEMU. Seen once in CI: a TCG outer kernel
# stopped at 7.3 s of uptime, just before it would run init, printed nothing more for
# 300 s, and every test of the suite failed with it.
OUTER_BOOT_RETRIES = 1


class BootStalled(RigError):
    """The outer guest was not ready within boot_timeout while QEMU went on running."""


# A CPU of the outer kernel that its soft-lockup watchdog reports stuck this long (the
# kernel's own figure, "stuck for Ns!") is taken as a crash: seen once in CI, a TCG outer
# guest spun in smp_call_function_many_cond for minutes without ever panicking, and the
# run would otherwise sit there until its whole timeout.
SOFT_LOCKUP_LIMIT_S = 120
_SOFT_LOCKUP = re.compile(rb"soft lockup - CPU#\d+ stuck for (\d+)s")
# A CPU spinning with interrupts off never lets that watchdog run; RCU's stall detector
# reports it instead, with how long the grace period has waited in jiffies (seen in CI: a
# CPU spinning in hrtimer_interrupt, "t=84039 jiffies" after 336 s). Same limit.
_RCU_STALL = re.compile(rb"rcu_\w+ detected stalls.*?\(detected by \d+, t=(\d+) jiffies", re.S)


def _outer_hz(version):
    """The outer kernel's timer frequency, from its config in /boot; 1000 (the highest,
    so a stall is never taken for longer than it is) when that cannot be read."""
    try:
        text = pathlib.Path(f"/boot/config-{version}").read_text()
        return int(re.search(r"^CONFIG_HZ=(\d+)$", text, re.M).group(1))
    except (OSError, AttributeError):
        return 1000


class OuterKernelCrash(RigError):
    """The outer guest's own kernel panicked, or locked up for SOFT_LOCKUP_LIMIT_S, while
    a run was going. Under TCG's emulation of SVM this happens now and then in the outer
    kernel's VMRUN path (a stack overflow in its exception entry, seen on a CI machine)
    whatever the inner guest does: a process in the outer guest cannot crash its kernel
    through /dev/kvm."""


@dataclasses.dataclass
class Result:
    host: str                 # "nested" or "direct"
    returncode: int           # the script's exit status (124/137 when it timed out)
    stdout: str
    stderr: str
    workdir: pathlib.Path     # this run's directory: script.sh, its files, stdout, stderr
    console_log: pathlib.Path | None  # the outer guest's whole console (None: direct)
    console: str              # what the outer console printed during this run
    seconds: float            # wall time of the run, seen from the host
    timed_out: bool

    def describe(self, lines=40):
        def tail(text):
            return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty)"
        parts = [f"[{self.host}] exit {self.returncode} after {self.seconds:.1f} s"
                 + (" (TIMED OUT)" if self.timed_out else "") + f", run dir {self.workdir}",
                 f"--- stdout (last {lines} lines)\n{tail(self.stdout)}",
                 f"--- stderr (last {lines} lines)\n{tail(self.stderr)}"]
        if self.console_log is not None:
            parts.append(f"--- outer console during the run ({self.console_log})\n"
                         f"{tail(self.console)}")
        return "\n".join(parts)

    def assert_ok(self):
        """Raises AssertionError with the whole story unless the script exited 0."""
        if self.returncode != 0 or self.timed_out:
            raise AssertionError(self.describe())
        return self


@dataclasses.dataclass
class RunTiming:
    label: str
    seconds: float
    returncode: int


def _tail_file(path, lines=60):
    try:
        text = pathlib.Path(path).read_text(errors="replace")
    except OSError:
        return "(no console log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


class KvmHost:
    """What every KVM host offers. A test calls run(); labels and timings are kept so
    that the suite can report them."""

    name = "?"

    def __init__(self, workdir):
        self.workdir = pathlib.Path(workdir).resolve()
        if any(c.isspace() for c in str(self.workdir)):
            raise ValueError(f"kvmrig work directory must not contain spaces: {self.workdir}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "runs").mkdir(exist_ok=True)
        self.label = ""        # set by the fixture to the current test's id
        self.timings = []      # RunTiming for every run
        self._seq = 0

    def run(self, script, timeout=600, files=None, env=None):
        """Runs SCRIPT (bash source text) as root in a fresh set of namespaces and returns
        a Result. FILES: {relative name: str | bytes | path of a file to copy (mode kept)},
        put next to the script in the run directory, which is also the script's working
        directory. ENV: extra environment variables. The script also gets RIG_HOST,
        RIG_RUN_DIR and RIG_TOP (the checkout). TIMEOUT (seconds) ends it with SIGTERM,
        then SIGKILL 10 s later; Result.timed_out says so."""
        run_dir = self._prepare(script, timeout, files or {}, env or {})
        result = self._execute(run_dir, timeout)
        self.timings.append(RunTiming(self.label, result.seconds, result.returncode))
        return result

    def close(self):
        pass

    def facts(self):
        """One line about this host for reports."""
        return self.name

    def _prepare(self, script, timeout, files, env):
        self._seq += 1
        name = f"{self._seq:04d}"
        run_dir = self.workdir / "runs" / name
        run_dir.mkdir(parents=True)
        (run_dir / "script.sh").write_text(script)
        for rel, content in files.items():
            dest = run_dir / rel
            if pathlib.PurePosixPath(rel).is_absolute() or ".." in pathlib.PurePosixPath(rel).parts:
                raise ValueError(f"kvmrig: file name must stay in the run directory: {rel}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                dest.write_bytes(content)
            elif isinstance(content, str):
                dest.write_text(content)
            else:
                shutil.copy2(content, dest)
        variables = {"RIG_HOST": self.name, "RIG_RUN_DIR": str(run_dir), "RIG_TOP": str(TOP)}
        variables.update(env)
        (run_dir / "env.sh").write_text(
            "".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in variables.items()))
        (run_dir / "timeout").write_text(f"{int(timeout)}\n")
        return run_dir

    def _collect(self, run_dir, returncode, seconds, timeout, console_log=None, console=""):
        stdout = (run_dir / "stdout").read_text(errors="replace") if (run_dir / "stdout").exists() else ""
        stderr = (run_dir / "stderr").read_text(errors="replace") if (run_dir / "stderr").exists() else ""
        timed_out = returncode in (124, 137) and "timeout: sending signal" in stderr
        return Result(self.name, returncode, stdout, stderr, run_dir, console_log, console,
                      seconds, timed_out)


class DirectKvm(KvmHost):
    """Runs scripts on this machine, for hosts whose /dev/kvm boots a stock kernel."""

    name = "direct"

    def _execute(self, run_dir, timeout):
        start = time.monotonic()
        with open(run_dir / "stdout", "wb") as out, open(run_dir / "stderr", "wb") as err:
            proc = subprocess.run(
                ["timeout", "--verbose", "-k", str(KILL_GRACE), str(int(timeout))] + NAMESPACES
                + ["bash", str(RUNNER), str(run_dir)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        return self._collect(run_dir, proc.returncode, time.monotonic() - start, timeout)

    def facts(self):
        return f"direct: {os.uname().release}, /dev/kvm on this machine"


class NestedKvm(KvmHost):
    """An outer QEMU TCG guest with a working /dev/kvm, booted on the first run and kept
    for the following ones; it is rebooted when it died or stopped answering."""

    name = "nested"

    def __init__(self, workdir, memory="6G", cpus=2, hugepages=512, boot_timeout=300,
                 outer_modules=OUTER_MODULES, tcg_thread="multi", kernel_args="",
                 kvm_amd_options=KVM_AMD_OPTIONS):
        """MEMORY: QEMU -m; CPUS: vCPUs (at most this machine's cores); HUGEPAGES: 2 MiB
        pages reserved at boot; OUTER_MODULES: what the outer initramfs loads;
        TCG_THREAD: "multi" (a host thread per vCPU) or "single"; KERNEL_ARGS: added to
        the outer kernel's command line; KVM_AMD_OPTIONS: kvm_amd's module options,
        space-separated (e.g. "npt=0")."""
        super().__init__(workdir)
        self.tcg_thread = tcg_thread
        self.kernel_args = kernel_args
        if "," in kvm_amd_options:  # commas separate them on the kernel command line
            raise ValueError(f"kvm_amd_options: space-separated name=value, not {kvm_amd_options!r}")
        self.kvm_amd_options = kvm_amd_options.split()
        self.outer_modules = tuple(outer_modules)
        self.memory = memory
        self.cpus = max(1, min(cpus, os.cpu_count() or 1))  # never more than the host has
        self.hugepages = hugepages
        self.boot_timeout = boot_timeout
        self.boots = []          # host wall seconds from QEMU start to ready, per boot
        self.guest_boots = []    # the outer guest's uptime when it was ready, per boot
        self.guest_facts = {}
        self.console_log = None
        self._proc = None
        self._boot_error = None
        self._boot_count = 0
        self._outer_hz = None    # the outer kernel's CONFIG_HZ, read when first needed
        self.crashes = []        # outer kernel crashes, each followed by another try
        self.boot_stalls = []    # boots not ready in time, each followed by another try
        for d in ("queue", "state"):
            (self.workdir / d).mkdir(exist_ok=True)

    # -- booting -------------------------------------------------------------------
    def boot(self):
        """Starts the outer guest and waits until it has proved /dev/kvm; raises
        RigError with the reason otherwise. A boot that stalled is tried again on a fresh
        QEMU, OUTER_BOOT_RETRIES times (each stall is kept in self.boot_stalls and
        reported in the suite summary); any other failure is not: every later run fails
        at once with the same reason."""
        if self._boot_error is not None:
            raise RigError(self._boot_error)
        if self._alive():
            return
        for attempt in range(OUTER_BOOT_RETRIES + 1):
            try:
                self._boot()
                return
            except BootStalled as err:
                self._kill()
                first_line = str(err).splitlines()[0]
                self.boot_stalls.append(f"boot {self._boot_count}: {first_line}")
                if attempt < OUTER_BOOT_RETRIES:
                    print(f"kvmrig: {first_line}; booting a fresh outer guest", file=sys.stderr,
                          flush=True)
                    continue
                self._boot_error = (f"{attempt + 1} boots in a row stalled; the last one: "
                                    f"{err}")
                raise RigError(self._boot_error) from err
            except RigError as err:
                self._boot_error = str(err)
                self._kill()
                raise

    def _boot(self):
        stock = stock_kernel()
        if stock is None:
            raise RigError("no stock kernel with modules in /boot (tools/setup.sh installs "
                           "linux-image-amd64)")
        kernel, version = stock
        initrd = build_initramfs(self.workdir / f"outer-{version}.cpio.gz",
                                 version, self.outer_modules, init=OUTER_INIT)
        self._boot_count += 1
        state = self.workdir / "state"
        for leftover in state.iterdir():
            leftover.unlink()
        for leftover in (self.workdir / "queue").iterdir():
            leftover.unlink()
        self.console_log = self.workdir / f"console-{self._boot_count}.log"
        # tsc=reliable: the emulated AMD CPU has no invariant-TSC bit, so with two CPUs
        # the outer kernel assumes their TSCs unsynchronized without measuring them and
        # marks the TSC unstable. They are one counter: every TCG vCPU reads QEMU's
        # monotonic tick count (the host's TSC). With the TSC unstable, the outer KVM
        # warns "SMP vm created on host with unstable TSC; guest TSC will not be
        # reliable", and SMP guests hung now and then: a 4-vCPU guest waited on timers
        # that never fired (RCU: "timer wakeup didn't happen", soft lockups, killed
        # after 300 s), a 2-vCPU one after it printed "Power down".
        cmdline = (f"console=ttyS0 panic=-1 tsc=reliable hugepages={self.hugepages} "
                   f"rig.work={self.workdir} rig.top={TOP} {self.kernel_args}").strip()
        if self.kvm_amd_options:
            cmdline += " rig.kvm_amd=" + ",".join(self.kvm_amd_options)
        args = [
            "qemu-system-x86_64", "-machine", "q35", "-accel", f"tcg,thread={self.tcg_thread}", "-cpu", "max",
            "-smp", str(self.cpus), "-m", str(self.memory),
            "-nodefaults", "-display", "none", "-no-reboot",
            "-chardev", f"file,id=console,path={self.console_log}", "-serial", "chardev:console",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
            "-virtfs", "local,path=/,mount_tag=hostfs,security_model=none,readonly=on,"
                       "multidevs=remap",
            "-virtfs", f"local,path={self.workdir},mount_tag=work,security_model=none,"
                       "multidevs=remap",
        ]
        (self.workdir / f"qemu-{self._boot_count}.cmd").write_text(shlex.join(args) + "\n")
        qemu_log = open(self.workdir / f"qemu-{self._boot_count}.log", "wb")
        start = time.monotonic()
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=qemu_log,
                                      stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        qemu_log.close()
        deadline = start + self.boot_timeout
        while True:
            if (state / "ready").exists():
                break
            if (state / "boot-failed").exists():
                raise RigError(self._story("the outer guest could not offer KVM: "
                                           + (state / "boot-failed").read_text().strip()))
            if self._proc.poll() is not None:
                raise RigError(self._story(f"the outer guest ended during boot (QEMU exit "
                                           f"{self._proc.returncode})"))
            if time.monotonic() > deadline:
                raise BootStalled(self._story(f"the outer guest was not ready after "
                                              f"{self.boot_timeout} s"))
            time.sleep(0.2)
        self.boots.append(time.monotonic() - start)
        facts = {}
        for line in (state / "ready").read_text().splitlines():
            key, _, value = line.partition("=")
            facts[key] = value
        self.guest_facts = facts
        self.guest_boots.append(float(facts.get("uptime", "nan")))

    def _story(self, reason):
        qemu_log = self.workdir / f"qemu-{self._boot_count}.log"
        qemu_out = qemu_log.read_text(errors="replace").strip() if qemu_log.exists() else ""
        return (f"{reason}\n--- QEMU: {qemu_out or '(no output)'}\n"
                f"--- outer console ({self.console_log}), last lines:\n"
                f"{_tail_file(self.console_log)}")

    def _alive(self):
        return self._proc is not None and self._proc.poll() is None

    def _kill(self):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    # -- running -------------------------------------------------------------------
    def _execute(self, run_dir, timeout):
        """Runs RUN_DIR; when the outer kernel crashed under it, boots a fresh outer guest
        and runs it again (files the crashed try created are removed; prepared files stay
        as it left them), at most OUTER_CRASH_REPEATS times: one more crash fails the run.
        Every crash is kept in self.crashes and reported in the suite summary."""
        prepared = set(run_dir.rglob("*"))
        for attempt in range(OUTER_CRASH_REPEATS + 1):
            try:
                return self._execute_once(run_dir, timeout)
            except OuterKernelCrash as crash:
                first_line = str(crash).splitlines()[0]
                last = attempt == OUTER_CRASH_REPEATS
                self.crashes.append(f"{self.label or run_dir.name}: "
                                    f"{'run failed: ' if last else ''}{first_line}")
                if last:
                    raise
                print(f"kvmrig: {first_line}; booting a fresh outer guest and running it "
                      "again", file=sys.stderr, flush=True)
                for leftover in sorted(set(run_dir.rglob("*")) - prepared, reverse=True):
                    if leftover.is_dir() and not leftover.is_symlink():
                        shutil.rmtree(leftover)
                    else:
                        leftover.unlink()
        raise AssertionError("unreachable")

    def _execute_once(self, run_dir, timeout):
        self.boot()
        console_from = self.console_log.stat().st_size
        start = time.monotonic()
        (self.workdir / "queue" / run_dir.name).touch()
        status = run_dir / "status"
        # The guest enforces TIMEOUT itself; beyond that plus the kill grace and slack
        # for an emulated machine, it has stopped answering.
        deadline = start + timeout + KILL_GRACE + 60
        lockup_seen_to = console_from  # console bytes already searched for a lockup
        while not status.exists():
            stuck = self._longest_stall(lockup_seen_to)
            lockup_seen_to = stuck[1]
            if stuck[0] >= SOFT_LOCKUP_LIMIT_S:
                self._kill()
                self._proc = None
                raise OuterKernelCrash(self._story(
                    f"the outer guest's kernel locked up (its watchdog: a CPU stuck for "
                    f"{stuck[0]} s) while running {run_dir}"))
            if not self._alive():
                code = self._proc.returncode
                self._proc = None
                with open(self.console_log, "rb") as f:
                    f.seek(console_from)
                    panicked = b"Kernel panic - not syncing" in f.read()
                # QEMU runs it with -no-reboot: a reset of the outer machine (a triple fault
                # in TCG's emulation, which leaves no kernel message) ends QEMU with status 0.
                # No run shuts the outer guest down, so that is a crash as a panic is.
                reset = code == 0
                error = OuterKernelCrash if panicked or reset else RigError
                what = ("the outer guest's kernel panicked" if panicked else
                        "the outer guest reset itself" if reset else "the outer guest ended")
                raise error(self._story(f"{what} (QEMU exit {code}) while running {run_dir}"))
            if time.monotonic() > deadline:
                self._kill()
                self._proc = None
                raise RigError(self._story(f"the outer guest stopped answering: no status "
                                           f"for {run_dir} {time.monotonic() - start:.0f} s "
                                           f"after it was queued (limit {timeout} s)"))
            time.sleep(0.1)
        seconds = time.monotonic() - start
        returncode = int(status.read_text().split()[0])
        with open(self.console_log, "rb") as f:
            f.seek(console_from)
            console = f.read().decode(errors="replace")
        return self._collect(run_dir, returncode, seconds, timeout, self.console_log, console)

    def _longest_stall(self, offset):
        """(the longest stall, in seconds, the outer kernel's soft-lockup watchdog or RCU
        stall detector reported in the console from OFFSET on, the offset searched up to).
        Lines still being written are left for the next call."""
        with open(self.console_log, "rb") as f:
            f.seek(offset)
            text = f.read()
        complete = text[:text.rfind(b"\n") + 1]
        seconds = [int(m.group(1)) for m in _SOFT_LOCKUP.finditer(complete)]
        if self._outer_hz is None:
            self._outer_hz = _outer_hz(stock_kernel()[1])
        seconds += [int(m.group(1)) // self._outer_hz for m in _RCU_STALL.finditer(complete)]
        # An RCU report's first line without its "detected by" line yet: searched again.
        cut = complete.rfind(b"detected stalls")
        if cut != -1:
            line_start = complete.rfind(b"\n", 0, cut) + 1
            if not _RCU_STALL.search(complete, line_start):
                complete = complete[:line_start]
        return (max(seconds, default=0), offset + len(complete))

    def close(self):
        """Powers the outer guest off (ACPI, through the agent), or kills it."""
        if not self._alive():
            return
        (self.workdir / "queue" / "poweroff").touch()
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._kill()
        self._proc = None

    def facts(self):
        f = self.guest_facts
        if not f:
            return f"nested: not booted ({self._boot_error or 'no run yet'})"
        return (f"nested: QEMU TCG ({self.tcg_thread}-threaded) -cpu max -smp {self.cpus} "
                f"-m {self.memory}, kernel {f.get('kernel')}, {f.get('hugepages')} hugepages, "
                f"kvm_amd npt={f.get('npt')}; {f.get('kvm')}")


def direct_kvm_problem(workdir=None):
    """None when this machine's /dev/kvm can run the guests our tests run; otherwise why
    not. Beyond running a vCPU (kvmprobe), it needs hardware-assisted KVM (kvm_intel or
    kvm_amd: paravirtual variants such as kvm_pvm run real-mode code but not a stock
    kernel), and QEMU with -enable-kvm -cpu host must boot the stock kernel to its
    initramfs."""
    try:
        kvmprobe.probe()
    except kvmprobe.KvmProblem as err:
        return str(err)
    modules = pathlib.Path("/sys/module")
    if not any((modules / m).exists() for m in ("kvm_intel", "kvm_amd")):
        kvm_like = sorted(p.name for p in modules.glob("kvm*"))
        return (f"/dev/kvm runs a vCPU, but neither kvm_intel nor kvm_amd is loaded "
                f"(KVM modules: {', '.join(kvm_like) or 'none'}): not the hardware-assisted "
                f"KVM a stock kernel boots on")
    return _qemu_boot_problem(pathlib.Path(workdir or "/tmp"))


def _qemu_boot_problem(workdir):
    stock = stock_kernel()
    if stock is None:
        return "no stock kernel with modules in /boot"
    kernel, _ = stock
    workdir.mkdir(parents=True, exist_ok=True)
    initrd = build_initramfs(workdir / "direct-probe.cpio.gz",
                             init_text="echo KVMRIG-DIRECT-PROBE-OK\npoweroff -f\n")
    args = ["qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-m", "256", "-nographic",
            "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", "console=ttyS0 panic=-1 quiet"]
    try:
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode(errors="replace")
        return f"QEMU -enable-kvm did not boot the stock kernel in 60 s: {out[-300:]!r}"
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    if "KVMRIG-DIRECT-PROBE-OK" not in out:
        return f"QEMU -enable-kvm could not boot the stock kernel (exit {proc.returncode}): " \
               f"{out.strip()[-300:]!r}"
    return None

"""conduit-vmm boots the stock Debian kernel on real KVM (issue 3).

Every VM boots the same busybox initramfs. Its init prints one line with a random nonce
taken from the kernel command line, the CPU count (nproc and /proc/cpuinfo) and MemTotal,
then does what the command line says: power off (the default), panic or reboot. So a
line can only come from a guest booted with this run's command line, and each test
asserts what the guest saw and how conduit-vmm ended.

Nested boots are slow (about 16-25 s each with `quiet`: every console byte of the inner
guest costs ~10 ms), so the module boots all seven VMs one after the other in ONE run
(the `scenario` fixture, about 155 s), each under its own time limit, and the tests check
their parts of it. A test checks every VM it owns before failing: one broken VM does not
hide the others' results.
"""
import dataclasses
import re
import secrets

import pytest

import kvmrig

VMM = kvmrig.TOP / "build" / "release" / "vmm" / "conduit-vmm"
MiB = 1024 * 1024
VM_LIMIT = 300  # seconds for one VM, boot to exit, nested on a loaded machine

# The guest's init. `vmm.then` chooses the ending; the marker comes first, so a guest
# that panics or reboots has shown that it booted.
GUEST_INIT = r"""
arg() {
    for word in $(cat /proc/cmdline); do
        case "$word" in "$1"=*) echo "${word#*=}" ;; esac
    done
}
echo "VMM-GUEST-UP nonce=$(arg vmm.nonce) nproc=$(nproc)" \
     "cpuinfo=$(grep -c '^processor' /proc/cpuinfo)" \
     "memtotal_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
case "$(arg vmm.then)" in
    panic) echo c >/proc/sysrq-trigger ;;
    reboot) reboot -f ;;
    *) poweroff -f ;;
esac
sleep 600
"""

MARKER = re.compile(r"^VMM-GUEST-UP nonce=(\S*) nproc=(\d+) cpuinfo=(\d+) memtotal_kb=(\d+)\r?$",
                    re.M)

# Runs one VM: `boot NAME conduit-vmm-arguments...`. The console (stdout) and the VMM's
# log (stderr) go to tmpfs while it runs (each console byte would otherwise be a 9p
# write) and are copied to the run directory afterwards with the exit status and the
# seconds it took. With HUGE_WATCH=1 the fewest hugepages available (free and not
# reserved) seen while it ran is kept too: a MAP_SHARED hugetlb mapping reserves all
# its pages at mmap(), but they only leave HugePages_Free when the guest touches them.
BOOT_FUNCTION = f"""
huge_free() {{ awk '/^HugePages_Free:/ {{f = $2}} /^HugePages_Rsvd:/ {{r = $2}}
                   END {{print f - r}}' /proc/meminfo; }}
boot() {{
    name=$1; shift
    start=$(date +%s.%N)
    timeout -k 10 {VM_LIMIT} {VMM} "$@" >/tmp/$name.out 2>/tmp/$name.err &
    vm=$!
    if [ "${{HUGE_WATCH:-0}}" = 1 ]; then
        free_before=$(huge_free); free_min=$free_before
        while kill -0 $vm 2>/dev/null; do
            now=$(huge_free); [ "$now" -lt "$free_min" ] && free_min=$now
            sleep 0.5
        done
        echo "$free_before $free_min" >$name.huge
    fi
    wait $vm
    echo $? >$name.status
    awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {{printf "%.1f\\n", e - s}}' >$name.seconds
    cp /tmp/$name.out $name.out; cp /tmp/$name.err $name.err
    echo "$name: exit $(cat $name.status) after $(cat $name.seconds) s"
}}
"""


@pytest.fixture(scope="module")
def guest_initrd(tmp_path_factory):
    return kvmrig.build_initramfs(tmp_path_factory.mktemp("vmm-boot") / "guest.cpio.gz",
                                  init_text=GUEST_INIT)


@dataclasses.dataclass
class Vm:
    """One VM of a run: what it was given, and (after the run) what came of it."""
    name: str
    cpus: int
    memory_mib: int
    nonce: str = dataclasses.field(default_factory=lambda: secrets.token_hex(8))
    then: str = "poweroff"
    status: int | None = None
    out: str = ""
    err: str = ""
    seconds: str = "?"

    def cmdline(self):
        return f"console=ttyS0 quiet panic=-1 vmm.nonce={self.nonce} vmm.then={self.then}"

    def read(self, result):
        def text(suffix):
            path = result.workdir / f"{self.name}.{suffix}"
            return path.read_text(errors="replace") if path.exists() else ""
        status = text("status").strip()
        self.status = int(status) if status else None
        self.out, self.err, self.seconds = text("out"), text("err"), text("seconds").strip()

    def story(self, lines=25):
        def tail(text):
            return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty)"
        return (f"--- VM {self.name} ({self.cpus} vCPU, {self.memory_mib} MiB, "
                f"then {self.then}): exit {self.status} after {self.seconds} s\n"
                f"console:\n{tail(self.out)}\nconduit-vmm log:\n{tail(self.err)}")

    def guest_problems(self, console=None):
        """What is wrong with the guest's marker line: the nonce, both CPU counts and a
        MemTotal that fits the memory given. The kernel keeps its own image (text, data,
        bss: about 45 MiB for the Debian 6.1 kernel), the struct pages (1/64 of RAM) and
        the first MiB out of MemTotal: measured 204 MiB of 256 and 455 of 512."""
        console = self.out if console is None else console
        found = MARKER.findall(console)
        if len(found) != 1:
            return [f"{self.name}: {len(found)} marker lines from the guest, expected 1"]
        nonce, nproc, cpuinfo, memtotal_kb = found[0]
        problems = []
        if nonce != self.nonce:
            problems.append(f"{self.name}: nonce {nonce!r}, expected {self.nonce}")
        if int(nproc) != self.cpus or int(cpuinfo) != self.cpus:
            problems.append(f"{self.name}: nproc {nproc}, cpuinfo {cpuinfo}, "
                            f"expected {self.cpus} vCPUs")
        memory_kb = self.memory_mib * 1024
        low = memory_kb - 64 * 1024 - memory_kb // 64
        if not low <= int(memtotal_kb) < memory_kb:
            problems.append(f"{self.name}: MemTotal {memtotal_kb} kB, expected from {low} kB "
                            f"to under {memory_kb} kB for {self.memory_mib} MiB")
        return problems


def config_file(vm, name):
    """The YAML config of the `cfg` VM: 1 vCPU and a stdio console, both overridden on
    the command line (2 vCPUs, a console file)."""
    return f"""# conduit-vmm VM config written by {__name__}
name: {name}
kernel: {kvmrig.stock_kernel()[0]}
initrd: guest.cpio.gz
cmdline: {vm.cmdline()}
cpus: 1
memory: {vm.memory_mib}M
serial: stdio
"""


def vmm_args(vm, *extra):
    return (f'--kernel "$KERNEL" --initrd guest.cpio.gz --cmdline "{vm.cmdline()}" '
            f"--cpus {vm.cpus} --memory {vm.memory_mib}M " + " ".join(extra))


@dataclasses.dataclass
class Scenario:
    result: kvmrig.Result
    vms: dict          # name -> Vm, filled in from the run
    config_name: str   # the `name:` in the cfg VM's config file

    def fail_with(self, problems, names):
        """Fails with PROBLEMS, the named VMs' consoles and logs and the run's story."""
        assert not problems, "\n".join(problems) + "\n" + \
            "\n".join(self.vms[n].story() for n in names) + "\n" + self.result.describe()


def pytest_generate_tests(metafunc):
    # One scenario per KVM host the session uses (conftest.py chooses them), shared by
    # the module's tests.
    if "scenario" in metafunc.fixturenames:
        metafunc.parametrize("scenario", metafunc.config.kvm_host_names, indirect=True,
                             scope="module")


@pytest.fixture(scope="module")
def scenario(request, kvm_hosts, guest_initrd):
    """Boots every VM of the module one after the other in one run on the KVM host
    REQUEST.param: 1, 2 and 4 vCPUs, hugepages, a panic, a reboot, and a config file
    with command-line overrides and the console in a file."""
    host = kvm_hosts.ready(request.param)
    vms = {vm.name: vm for vm in (
        Vm("cpus1", 1, 256), Vm("cpus2", 2, 384), Vm("cpus4", 4, 512),
        Vm("huge", 2, 256),
        Vm("panic", 1, 256, then="panic"), Vm("reboot", 2, 256, then="reboot"),
        Vm("cfg", 2, 320))}
    config_name = f"cfg{secrets.token_hex(3)}"
    commands = [f"boot {n} {vmm_args(vms[n])}" for n in ("cpus1", "cpus2", "cpus4")]
    commands.append(f"HUGE_WATCH=1 boot huge {vmm_args(vms['huge'], '--hugepages')}")
    commands += [f"boot {n} {vmm_args(vms[n])}" for n in ("panic", "reboot")]
    commands += ["boot cfg --config vm.yaml --cpus 2 --serial file:/tmp/cfg.console",
                 "cp /tmp/cfg.console cfg.console"]
    script = "set -u\n" + BOOT_FUNCTION + "\n".join(commands) + "\n"
    host.label = f"{__name__}: {len(vms)} VMs in one run"
    try:
        r = host.run(script, timeout=VM_LIMIT * len(vms) + 120,
                     files={"guest.cpio.gz": guest_initrd,
                            "vm.yaml": config_file(vms["cfg"], config_name)},
                     env={"KERNEL": kvmrig.stock_kernel()[0]})
    finally:
        host.label = ""  # the next module fixture's run must not carry this label
    for vm in vms.values():
        vm.read(r)
    print(f"\n[{host.name}] {r.seconds:.1f} s for the run:\n{r.stdout.strip()}")
    return Scenario(r, vms, config_name)


def test_stock_kernel_boots_with_1_2_4_vcpus_and_hugepages(scenario):
    """Each guest prints its nonce, CPU count and MemTotal and powers off: exit 0. The
    hugepage VM reserved at least its RAM's worth of hugepages while it ran."""
    scenario.result.assert_ok()
    names = ("cpus1", "cpus2", "cpus4", "huge")
    problems = []
    for vm in (scenario.vms[n] for n in names):
        if vm.status != 0:
            problems.append(f"{vm.name}: exit {vm.status}, expected 0 (guest powered off)")
        problems += vm.guest_problems()
        if "the guest powered off (ACPI S5)" not in vm.err:
            problems.append(f"{vm.name}: conduit-vmm did not log the ACPI power-off")
    watch = scenario.result.workdir / "huge.huge"
    huge = watch.read_text().split() if watch.exists() else []
    # 256 MiB of guest RAM is 128 hugepages, reserved while the VM ran.
    if len(huge) != 2 or int(huge[0]) - int(huge[1]) < 128:
        problems.append(f"huge: hugepages available (HugePages_Free - HugePages_Rsvd) "
                        f"before and lowest while running: {huge}, expected a drop of at "
                        f"least 128")
    scenario.fail_with(problems, names)


def test_a_panic_and_a_reboot_end_with_status_3(scenario):
    """A guest that panics (`echo c >/proc/sysrq-trigger` with panic=-1) and one that
    runs `reboot -f` both reset the machine: conduit-vmm exits 3 (docs/vmm.md)."""
    scenario.result.assert_ok()
    panic, reboot = scenario.vms["panic"], scenario.vms["reboot"]
    problems = panic.guest_problems() + reboot.guest_problems()
    for vm in (panic, reboot):
        if vm.status != 3:
            problems.append(f"{vm.name}: exit {vm.status}, expected 3 (guest rebooted)")
        if "guest rebooted" not in vm.err:
            problems.append(f"{vm.name}: conduit-vmm did not log that the guest rebooted")
    if "Kernel panic - not syncing: sysrq triggered crash" not in panic.out:
        problems.append("panic: no 'Kernel panic - not syncing: sysrq triggered crash' "
                        "on the console")
    if "reboot: Restarting system" not in reboot.out:
        problems.append("reboot: no 'reboot: Restarting system' on the console")
    if "Kernel panic" in reboot.out:
        problems.append("reboot: the kernel panicked instead of rebooting")
    scenario.fail_with(problems, ("panic", "reboot"))


def test_config_file_with_overrides_and_a_serial_file(scenario):
    """The YAML config gives name, kernel, initrd, command line, 1 vCPU, memory and a
    stdio console; the command line overrides the vCPUs (2) and the console (a file)."""
    scenario.result.assert_ok()
    vm = scenario.vms["cfg"]
    console_path = scenario.result.workdir / "cfg.console"
    console = console_path.read_text(errors="replace") if console_path.exists() else ""
    problems = []
    if vm.status != 0:
        problems.append(f"cfg: exit {vm.status}, expected 0")
    problems += vm.guest_problems(console)
    if vm.out:
        problems.append(f"cfg: the console went to stdout, not only to the file: {vm.out!r}")
    if f"conduit-vmm[{scenario.config_name}] info: vm: the guest powered off (ACPI S5)" \
            not in vm.err:
        problems.append(f"cfg: no power-off line under the config's name "
                        f"{scenario.config_name}")
    scenario.fail_with(problems, ("cfg",))

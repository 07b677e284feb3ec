"""Fixtures for the nested-KVM suite.

`kvm_host` is parametrized over the KVM hosts this machine offers: always `nested` (an
outer QEMU TCG guest with a working /dev/kvm, booted once per session), and `direct`
when this machine's own /dev/kvm can boot a stock kernel. CONDUIT_KVM_HOSTS=nested,
=direct or =nested,direct chooses instead; a chosen host that cannot run fails its
tests with the reason. A host that cannot boot fails every test that uses it, with the
reason and the outer console's last lines: nothing is skipped.

    def test_something(kvm_host):
        r = kvm_host.run("conduit-vmm --kernel ...", timeout=600, files={...})
        r.assert_ok()
        assert "marker" in r.stdout
"""
import os

import pytest

import kvmrig

HOST_NAMES = ("nested", "direct")


def pytest_configure(config):
    if os.geteuid() != 0:
        raise pytest.UsageError("the nested suite needs root (QEMU, namespaces, /dev/kvm)")
    chosen = os.environ.get("CONDUIT_KVM_HOSTS", "auto").strip()
    config.kvm_direct_problem = kvmrig.direct_kvm_problem(kvmrig.TOP / "build" / "nested")
    if chosen == "auto":
        names = ["nested"] + (["direct"] if config.kvm_direct_problem is None else [])
    else:
        names = [n.strip() for n in chosen.split(",") if n.strip()]
        unknown = [n for n in names if n not in HOST_NAMES]
        if unknown or not names:
            raise pytest.UsageError(f"CONDUIT_KVM_HOSTS={chosen!r}: choose from "
                                    f"{', '.join(HOST_NAMES)}")
    config.kvm_host_names = names
    config.kvm_pool = None


def pytest_report_header(config):
    lines = [f"kvm hosts: {', '.join(config.kvm_host_names)}"]
    if config.kvm_direct_problem is not None:
        lines.append(f"direct KVM not usable here: {config.kvm_direct_problem}")
    return lines


def pytest_generate_tests(metafunc):
    if "kvm_host" in metafunc.fixturenames:
        metafunc.parametrize("kvm_host", metafunc.config.kvm_host_names, indirect=True)


class HostPool:
    """One host of each kind per session, made on first use and closed at the end."""

    def __init__(self, config, tmp_path_factory):
        self.config = config
        self.tmp_path_factory = tmp_path_factory
        self.hosts = {}

    def get(self, name):
        if name not in self.hosts:
            workdir = self.tmp_path_factory.mktemp(f"kvm-{name}", numbered=True)
            self.hosts[name] = kvmrig.NestedKvm(workdir) if name == "nested" \
                else kvmrig.DirectKvm(workdir)
        return self.hosts[name]

    def ready(self, name):
        """The host NAME, booted (nested) and able to run; fails the test with the
        reason when it cannot be."""
        if name == "direct" and self.config.kvm_direct_problem is not None:
            pytest.fail(f"the direct KVM host was chosen but cannot run: "
                        f"{self.config.kvm_direct_problem}")
        host = self.get(name)
        if isinstance(host, kvmrig.NestedKvm):
            try:
                host.boot()
            except kvmrig.RigError as err:
                pytest.fail(f"the nested KVM host did not boot: {err}")
        return host

    def close(self):
        for host in self.hosts.values():
            host.close()


@pytest.fixture(scope="session")
def kvm_hosts(request, tmp_path_factory):
    pool = HostPool(request.config, tmp_path_factory)
    request.config.kvm_pool = pool
    yield pool
    pool.close()


@pytest.fixture
def kvm_host(request, kvm_hosts):
    """A kvmrig host (NestedKvm or DirectKvm) ready to run(); booted before the test so
    that the test's own runs are timed without the boot."""
    host = kvm_hosts.ready(request.param)
    host.label = request.node.nodeid
    first = len(host.timings)
    yield host
    runs = host.timings[first:]
    request.node.user_properties.append(
        ("kvm_run_seconds", " ".join(f"{t.seconds:.1f}" for t in runs)))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    pool = getattr(config, "kvm_pool", None)
    tr = terminalreporter
    tr.section("kvm hosts and timings")
    if config.kvm_direct_problem is not None:
        tr.write_line(f"direct: not used: {config.kvm_direct_problem}")
    if pool is None:
        tr.write_line("no KVM host was used")
        return
    for host in pool.hosts.values():
        tr.write_line(host.facts())
        if isinstance(host, kvmrig.NestedKvm):
            for i, (wall, guest) in enumerate(zip(host.boots, host.guest_boots), 1):
                tr.write_line(f"  boot {i}: ready {wall:.1f} s after QEMU started "
                              f"(outer guest uptime {guest:.1f} s)")
            for stall in host.boot_stalls:
                tr.write_line(f"  outer boot stalled, QEMU started again: {stall}")
            for crash in host.crashes:
                tr.write_line(f"  outer kernel crash, run repeated on a fresh boot: {crash}")
        for t in host.timings:
            tr.write_line(f"  run {t.seconds:6.1f} s  exit {t.returncode:3d}  {t.label}")
        total = sum(t.seconds for t in host.timings) + sum(getattr(host, "boots", []))
        tr.write_line(f"  {host.name}: {len(host.timings)} runs, {total:.1f} s in boots and runs")

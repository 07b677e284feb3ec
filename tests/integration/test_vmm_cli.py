"""conduit-vmm refuses bad input with one clear line and exit status 1 (2 for usage),
before anything is started. These checks happen before KVM is touched, so they run on
any machine; the guest-facing behaviour is tested on real KVM in tests/nested."""
import os
import pathlib
import subprocess

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
VMM = TOP / "build" / "release" / "vmm" / "conduit-vmm"
GUEST = TOP / "tests" / "guest"


def stock_kernel():
    kernels = sorted(pathlib.Path("/boot").glob("vmlinuz-*"))
    assert kernels, "no /boot/vmlinuz-*: tools/setup.sh installs linux-image-amd64"
    return kernels[-1]


def vmm(*args, timeout=30, wrap=()):
    return subprocess.run([*wrap, str(VMM), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def refused(result, *phrases, status=1):
    out = result.stdout + result.stderr
    assert result.returncode == status, f"exit {result.returncode}, wanted {status}:\n{out}"
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one line saying why:\n{out}"
    for p in phrases:
        assert p in lines[0], f"{p!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def initrd(tmp_path_factory):
    path = tmp_path_factory.mktemp("vmm") / "small.cpio.gz"
    path.write_bytes(os.urandom(4096))
    return path


def test_missing_kernel():
    refused(vmm("--kernel", "/nonexistent/vmlinuz"),
            "kernel '/nonexistent/vmlinuz'", "No such file")


def test_no_kernel_given():
    refused(vmm("--cpus", "2"), "no kernel given")


def test_corrupt_kernel(tmp_path):
    bad = tmp_path / "vmlinuz"
    bad.write_bytes(os.urandom(2 * 1024 * 1024))
    refused(vmm("--kernel", bad), f"kernel '{bad}'", "is not a bzImage")


def test_truncated_kernel(tmp_path):
    cut = tmp_path / "vmlinuz"
    cut.write_bytes(stock_kernel().read_bytes()[:1024 * 1024])
    refused(vmm("--kernel", cut), "truncated")


def test_initrd_too_large_for_memory(tmp_path):
    big = tmp_path / "initrd"
    with open(big, "wb") as f:
        f.truncate(200 * 1024 * 1024)  # sparse: costs no disk
    refused(vmm("--kernel", stock_kernel(), "--initrd", big, "--memory", "128M"),
            "initrd (200 MiB) does not fit in guest memory")


def test_memory_too_small_for_the_kernel():
    refused(vmm("--kernel", stock_kernel(), "--memory", "64M"),
            "memory is too small for this kernel")


def test_command_line_too_long():
    line = refused(vmm("--kernel", stock_kernel(), "--cmdline", "x" * 3000),
                   "command line is too long: 3000 bytes, this kernel accepts at most")
    assert line.endswith("2047"), line


def test_no_kvm_is_said_in_words(tmp_path, initrd):
    # A mount namespace whose /dev has no kvm node: what a machine without KVM looks like.
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 && exec "$@"', "-"]
    line = refused(vmm("--kernel", stock_kernel(), "--initrd", initrd, "--serial", "none",
                       wrap=wrap), "this machine has no KVM")
    assert "/dev/kvm" in line


def test_not_enough_hugepages():
    refused(vmm("--kernel", stock_kernel(), "--memory", "64G", "--hugepages", "--serial", "none"),
            "hugepage", "nr_hugepages")


def test_hugepages_need_whole_pages():
    refused(vmm("--kernel", stock_kernel(), "--memory", "65M", "--hugepages"),
            "multiple of 2 MiB")


@pytest.mark.parametrize("args,phrase", [
    (["--cpus", "0"], "--cpus: '0' is not a vCPU count"),
    (["--cpus", "300"], "is not a vCPU count from 1 to 254"),
    (["--memory", "12Q"], "--memory: unknown unit"),
    (["--serial", "tty"], "is not a console"),
    (["--net", "mac=52:54:00:00:00:01"], "a card needs socket=PATH"),
    (["--net", "socket=/tmp/x.sock,mac=01:00:00:00:00:01"], "multicast"),
    (["--net", "socket=/tmp/x.sock,mtu=20000"], "mtu must be from 68 to 9000"),
    (["--net", "socket=/tmp/x.sock,colour=blue"], "unknown net setting 'colour'"),
    (["--log-level", "loud"], "unknown log level"),
])
def test_bad_options(args, phrase):
    refused(vmm("--kernel", stock_kernel(), *args), phrase)


def test_usage_errors_exit_2():
    r = vmm("--frobnicate")
    assert r.returncode == 2 and "unknown argument '--frobnicate'" in r.stderr
    r = vmm("--kernel")
    assert r.returncode == 2 and "--kernel needs a value" in r.stderr


def test_config_file_errors_name_file_and_line(tmp_path):
    cfg = tmp_path / "vm.yaml"
    cfg.write_text(f"kernel: {stock_kernel()}\ncpus: 2\nmemroy: 1G\n")
    refused(vmm("--config", cfg), f"{cfg}:3: unknown setting 'memroy'")
    cfg.write_text("kernel: k\nnet:\n  - socket: /tmp/a.sock\n    mtu: 99999\n")
    refused(vmm("--config", cfg), f"{cfg}:4:", "mtu must be from 68 to 9000")


def test_check_validates_without_starting(tmp_path, initrd):
    cfg = tmp_path / "vm.yaml"
    cfg.write_text(f"name: r1\nkernel: {stock_kernel()}\ninitrd: {initrd}\ncpus: 2\n")
    r = vmm("--config", cfg, "--check", "--memory", "1G")  # the command line overrides
    assert r.returncode == 0, r.stderr
    assert "r1: valid" in r.stdout and "2 vCPU(s), 1024 MiB" in r.stdout


def test_shipped_vm_config_is_valid(initrd):
    r = vmm("--config", TOP / "configs" / "vm.yaml", "--initrd", initrd, "--check")
    assert r.returncode == 0, r.stderr


def test_bad_net_socket_directory_is_refused_before_start(initrd):
    refused(vmm("--kernel", stock_kernel(), "--initrd", initrd, "--serial", "none",
                "--net", "socket=/nonexistent-dir/vm.sock"), "net0", "/nonexistent-dir")

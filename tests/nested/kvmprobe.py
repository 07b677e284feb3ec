#!/usr/bin/env python3
"""Does /dev/kvm run guest code? Not just "does the node exist": this opens /dev/kvm,
checks the API version, creates a VM with 64 KiB of RAM under 4 GiB, and runs one vCPU
from its reset vector (real mode, CS:IP = F000:FFF0, i.e. guest address 0xFFFFFFF0)
through code that writes a byte to an I/O port and halts. Only the standard library is
used, so that the outer guest of the nested rig can run it from the host's files.

    python3 kvmprobe.py      prints "kvm ok: api=12 ..." and exits 0, or the reason and 1
"""
import ctypes
import fcntl
import mmap
import os
import struct
import sys

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46  # _IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)
KVM_RUN = 0xAE80
KVM_EXIT_IO = 2
KVM_EXIT_HLT = 5

RAM_BASE = 0xFFFF0000  # the top 64 KiB below 4 GiB holds the reset vector
RAM_SIZE = 0x10000
PORT = 0x10
VALUE = 0xA5
# At the reset vector: mov al, VALUE; out PORT, al; hlt
RESET_CODE = bytes([0xB0, VALUE, 0xE6, PORT, 0xF4])


class KvmProblem(Exception):
    """/dev/kvm is missing or cannot run a guest; the message says which step failed."""


def _ioctl(fd, request, arg, step):
    try:
        return fcntl.ioctl(fd, request, arg)
    except OSError as err:
        raise KvmProblem(f"{step} failed: {err.strerror} (errno {err.errno})") from None


def _run_reset_vector(kvm_fd, vm_fd):
    ram = mmap.mmap(-1, RAM_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    ram[RAM_SIZE - 16:RAM_SIZE - 16 + len(RESET_CODE)] = RESET_CODE
    anchor = ctypes.c_char.from_buffer(ram)
    try:
        region = struct.pack("IIQQQ", 0, 0, RAM_BASE, RAM_SIZE, ctypes.addressof(anchor))
        _ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, region, "KVM_SET_USER_MEMORY_REGION")
        vcpu_fd = _ioctl(vm_fd, KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU")
        try:
            run_size = _ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE")
            run = mmap.mmap(vcpu_fd, run_size, flags=mmap.MAP_SHARED,
                            prot=mmap.PROT_READ | mmap.PROT_WRITE)
            try:
                return _expect_out_then_hlt(vcpu_fd, run)
            finally:
                run.close()
        finally:
            os.close(vcpu_fd)
    finally:
        del anchor
        ram.close()


def _expect_out_then_hlt(vcpu_fd, run):
    # struct kvm_run: exit_reason at offset 8; the io member of the exit union at 32:
    # u8 direction, u8 size, u16 port, u32 count, u64 data_offset.
    _ioctl(vcpu_fd, KVM_RUN, 0, "KVM_RUN")
    reason = struct.unpack_from("I", run, 8)[0]
    if reason != KVM_EXIT_IO:
        raise KvmProblem(f"first exit was reason {reason}, expected KVM_EXIT_IO")
    _direction, size, port, _count, offset = struct.unpack_from("BBHIQ", run, 32)
    value = run[offset]
    if (port, size, value) != (PORT, 1, VALUE):
        raise KvmProblem(f"guest wrote 0x{value:x} (size {size}) to port 0x{port:x}, "
                         f"expected 0x{VALUE:x} to 0x{PORT:x}")
    _ioctl(vcpu_fd, KVM_RUN, 0, "KVM_RUN")
    reason = struct.unpack_from("I", run, 8)[0]
    if reason != KVM_EXIT_HLT:
        raise KvmProblem(f"second exit was reason {reason}, expected KVM_EXIT_HLT")
    return f"out 0x{VALUE:x} to port 0x{PORT:x}, then hlt"


def probe(path="/dev/kvm"):
    """Returns a one-line description of a working KVM; raises KvmProblem otherwise."""
    if not os.path.exists(path):
        raise KvmProblem(f"{path} does not exist")
    try:
        kvm_fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        raise KvmProblem(f"cannot open {path}: {err.strerror}") from None
    try:
        api = _ioctl(kvm_fd, KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")
        if api != 12:
            raise KvmProblem(f"KVM API version {api}, expected 12")
        vm_fd = _ioctl(kvm_fd, KVM_CREATE_VM, 0, "KVM_CREATE_VM")
        try:
            ran = _run_reset_vector(kvm_fd, vm_fd)
        finally:
            os.close(vm_fd)
    finally:
        os.close(kvm_fd)
    return f"kvm ok: api={api}, a vCPU ran from its reset vector: {ran}"


def main():
    try:
        print(probe())
        return 0
    except KvmProblem as err:
        print(f"kvm unusable: {err}")
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark suite's CPU placement (tools/bench/quiet_cpu.py): the kernel's movable
threads and interrupts leave the switch's CPU for a run and come back after it, exactly
as they were. Real kernel threads and interrupts of this machine: nothing stands in."""
import os
import pathlib
import sys

import rig as rigmod

sys.path.insert(0, str(rigmod.TOP / "tools" / "bench"))
from quiet_cpu import QuietCpu, parse_cpu_list  # noqa: E402

SWITCH_CPU, GEN_CPU = 1, 0


def irq_cpus(irq):
    return parse_cpu_list((pathlib.Path("/proc/irq") / str(irq) / "smp_affinity_list").read_text())


def test_kernel_threads_and_interrupts_leave_the_switch_cpu_and_come_back():
    assert len(os.sched_getaffinity(0)) >= 2, "needs 2 CPUs: the switch's and the generator's"
    kthreadd_cpus = os.sched_getaffinity(2)
    with QuietCpu(SWITCH_CPU, {GEN_CPU}) as quiet:
        # kthreadd (pid 2), the parent of every kernel thread, moves when it may run on
        # the switch's CPU (not on a machine that isolates that CPU already).
        assert (2 in quiet.threads) == (SWITCH_CPU in kthreadd_cpus), quiet.summary()
        for pid in quiet.threads:
            try:
                assert os.sched_getaffinity(pid) == {GEN_CPU}, (pid, quiet.threads[pid])
            except ProcessLookupError:
                pass  # a kernel thread that ended meanwhile
        for irq in quiet.irqs:
            assert irq_cpus(irq) == {GEN_CPU}, irq
        summary = quiet.summary()
    assert f"moved off CPU {SWITCH_CPU} to CPU {GEN_CPU}" in summary, summary
    for pid, (name, had) in quiet.threads.items():
        try:
            assert os.sched_getaffinity(pid) == had, (pid, name)
        except ProcessLookupError:
            pass
    for irq, had in quiet.irqs.items():
        assert irq_cpus(irq) == had, irq

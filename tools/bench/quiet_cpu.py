"""Keeps one CPU for the switch under test while a benchmark runs.

On this 2-CPU machine the switch polls on one CPU and the generator on the other, and
anything else the kernel runs on the switch's CPU holds the switch up: a trace of a
fixed-rate run (perf sched_switch on CPU 1, 60 s) found the kernel's DAMON thread
(kdamond) taking the switch's CPU 13 times for up to 4 ms, where a guest's ring of 1024
descriptors overflows after 0.37 ms at 2.8 Mpps. That is loss a switch did not cause,
and it sets the NDR. As a DPDK deployment does (isolcpus, IRQ affinity), QuietCpu moves
every kernel thread that may move and every interrupt off the switch's CPU, onto the
generator's, for the run, and puts them back afterwards. Per-CPU kernel threads cannot
move (the kernel refuses) and stay. User processes are left alone: the suite starts
its own children on the generator's CPU (each switch pins its poller itself).
"""
import os
import pathlib
import signal

PF_KTHREAD = 0x00200000  # include/linux/sched.h


def _kernel_threads():
    """(pid, name) of every kernel thread."""
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # The name is in parentheses and may hold spaces; the fields after it are plain.
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        flags = int(stat[stat.rindex(")") + 2:].split()[6])
        if flags & PF_KTHREAD:
            yield int(d.name), name


def parse_cpu_list(text):
    cpus = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def _cpu_list(cpus):
    return ",".join(str(c) for c in sorted(cpus))


class QuietCpu:
    """Context manager: kernel threads and interrupts off CPU `cpu` onto `to` (a set)."""

    def __init__(self, cpu, to):
        self.cpu = cpu
        self.to = set(to)
        self.threads = {}  # pid -> (name, the affinity it had)
        self.irqs = {}  # irq -> the affinity it had
        self.unmovable_threads = 0
        self.unmovable_irqs = []

    def __enter__(self):
        try:
            self._move()
        except BaseException:  # stopped halfway (SIGTERM, ^C): put back what moved
            self.__exit__(None, None, None)
            raise
        return self

    def _move(self):
        for pid, name in _kernel_threads():
            try:
                had = os.sched_getaffinity(pid)
            except OSError:
                continue
            if self.cpu not in had or len(had) == 1:
                continue  # not on the switch's CPU, or bound to one CPU (per-CPU thread)
            try:
                os.sched_setaffinity(pid, self.to)
            except OSError:
                self.unmovable_threads += 1
                continue
            self.threads[pid] = (name, had)
        for d in sorted(pathlib.Path("/proc/irq").glob("[0-9]*")):
            path = d / "smp_affinity_list"
            try:
                had = parse_cpu_list(path.read_text())
            except OSError:
                continue
            if self.cpu not in had:
                continue
            try:
                path.write_text(_cpu_list(self.to))
            except OSError:  # some interrupts cannot be steered (per-CPU timers)
                self.unmovable_irqs.append(int(d.name))
                continue
            self.irqs[int(d.name)] = had

    def __exit__(self, *exc):
        # Not cut short by a second SIGTERM or ^C: the machine must be left as it was.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            self._restore()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return False

    def _restore(self):
        for pid, (_, had) in self.threads.items():
            try:
                os.sched_setaffinity(pid, had)
            except OSError:  # the thread ended meanwhile
                pass
        for irq, had in self.irqs.items():
            try:
                (pathlib.Path("/proc/irq") / str(irq) / "smp_affinity_list").write_text(
                    _cpu_list(had))
            except OSError:
                pass

    def summary(self):
        """One line for the report: what was moved, and what could not be."""
        names = sorted({name for name, _ in self.threads.values()})
        text = (f"{len(self.threads)} kernel thread(s) ({', '.join(names) or 'none'}) and "
                f"{len(self.irqs)} interrupt(s) moved off CPU {self.cpu} to CPU "
                f"{_cpu_list(self.to)} for the run and put back after")
        if self.unmovable_threads or self.unmovable_irqs:
            text += (f"; {self.unmovable_threads} kernel thread(s) and "
                     f"{len(self.unmovable_irqs)} interrupt(s) would not move")
        return text

"""Fixtures for the integration suite. Each test builds its own rig (conduitd, guests,
host) through `rig`; whatever it started is stopped at the end, and every conduitd
still running must have its mbuf pool back at the baseline it recorded: no leak."""
import os
import pathlib
import subprocess

import pytest

import rig as rigmod


def pytest_configure(config):
    if os.geteuid() != 0:
        raise pytest.UsageError("the integration suite needs root (DPDK, namespaces)")
    if not rigmod.CONDUITD.exists():
        raise pytest.UsageError(f"{rigmod.CONDUITD} is not built: run tools/setup.sh")


class Rig:
    def __init__(self, workdir):
        self.workdir = pathlib.Path(workdir)
        self.started = []

    def conduitd(self, bridges, **kw):
        c = rigmod.Conduitd(self.workdir, bridges, **kw)
        self.started.append(c)
        return c

    def guests(self, sockets, **kw):
        g = rigmod.Guests(self.workdir, sockets, **kw)
        self.started.append(g)
        return g

    def pacer(self, sockets, macs, flows, **kw):
        p = rigmod.Pacer(self.workdir, sockets, macs, flows, **kw)
        self.started.append(p)
        return p

    def host(self, **kw):
        h = rigmod.NetnsHost(**kw)
        self.started.append(h)
        return h

    def sock(self, name):
        return str(self.workdir / f"{name}.sock")


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    problems = []
    # The pool check comes first, while everything is still connected and idle.
    for c in r.started:
        if isinstance(c, rigmod.Conduitd) and c.proc is not None and c.proc.poll() is None:
            try:
                c.assert_mempool_at_baseline()
            except AssertionError as err:
                problems.append(str(err))
    for thing in reversed(r.started):
        try:
            if isinstance(thing, rigmod.Conduitd):
                try:
                    thing.stop()
                finally:
                    thing.cleanup()
            else:
                thing.stop()
        except Exception as err:  # noqa: BLE001 - report every cleanup failure
            problems.append(f"{type(thing).__name__}: {err}")
    subprocess.run(["pkill", "-f", "file-prefix=itest"], capture_output=True)
    if problems:
        pytest.fail("\n".join(problems))

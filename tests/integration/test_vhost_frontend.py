"""conduit-vmm's vhost-user frontend against a real backend: DPDK 22.11's vhost library,
through testpmd's vhost PMD (net_vhost) forwarding in io mode with one port looped onto
itself, so every frame the "guest" transmits comes back on its receive ring.

The guest side is tests/integration/vhost_frontend_probe.cpp: the frontend library with a
memfd "guest RAM" holding one RX and one TX split virtqueue. What is proved here:
- the handshake DPDK's library accepts (features with the protocol-features bit re-added,
  protocol features, a two-region memory table with file offsets, MTU, vrings, REPLY_ACK
  on every message), and frames crossing it intact in both directions;
- testpmd killed (SIGKILL) is seen as a disconnect, and a new testpmd process on the same
  socket gets a second session that resumes the rings where the used indices say
  (SET_VRING_BASE), without DPDK having to resynchronise them;
- client mode: the frontend retries until a listening backend appears.
"""
import os
import pathlib
import queue
import re
import signal
import subprocess
import threading

import pytest

import rig as rigmod

PROBE = rigmod.TOP / "build" / "release" / "tests" / "integration" / "vhost_frontend_probe"
FRAMES = 32
# The probe's own limit for each wait (a connection, the echo of a batch): generous, since
# the machine may be slow; the test never fails for being slow, only for being wrong.
WAIT_MS = 90000


class VhostTestpmd:
    """One dpdk-testpmd process with a single vhost port, io-forwarding it onto itself."""

    def __init__(self, workdir, sock, name, client=True):
        self.workdir = pathlib.Path(workdir)
        self.sock = str(sock)
        self.name = name
        self.client = client
        self.prefix = f"vhprobe-{os.getpid()}"
        self.log_path = self.workdir / f"{name}.log"
        self.proc = None

    def start(self):
        rigmod.remove_dpdk_files(self.prefix)
        mem = ["--single-file-segments", "-m", "256"] if rigmod.HUGEPAGES else ["--no-huge", "-m", "256"]
        args = ["dpdk-testpmd", f"--file-prefix={self.prefix}", "--no-pci", *mem,
                "--lcores", "0@0,1@1",
                "--vdev", f"net_vhost0,iface={self.sock},client={1 if self.client else 0},queues=1",
                "--", "--forward-mode=io", "--port-topology=loop", "--total-num-mbufs=2048",
                # Without this testpmd drains (drops) whatever the guest already queued
                # when forwarding starts.
                "--no-flush-rx"]
        self.log = open(self.log_path, "w")
        # testpmd without -i forwards until its stdin gives a line or EOF: we hold the pipe.
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        return self

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self):
        """SIGKILL by pid: the backend dies without a word, as in a crash."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()
        rigmod.remove_dpdk_files(self.prefix)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.log.close()
            rigmod.remove_dpdk_files(self.prefix)
            return
        try:
            self.proc.stdin.close()  # "Press enter to exit": EOF ends it cleanly
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        rigmod.remove_dpdk_files(self.prefix)


class Probe:
    """The frontend probe; its stdout lines are read by a thread and matched in order."""

    def __init__(self, workdir, args):
        self.lines = queue.Queue()
        self.seen = []
        self.proc = subprocess.Popen([str(PROBE), *args, "--frames", str(FRAMES),
                                      "--wait-ms", str(WAIT_MS)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix, timeout=WAIT_MS / 1000 + 30, context=""):
        """The next line starting with `prefix` (earlier lines are kept in `seen`)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"probe: no '{prefix}' line in {timeout:.0f}s; output:\n"
                                     + "\n".join(self.seen) + context)
            if line is None:
                raise AssertionError(f"probe ended (exit {self.proc.wait()}) before '{prefix}':\n"
                                     + "\n".join(self.seen) + context)
            self.seen.append(line)
            if line.startswith("FAIL"):
                raise AssertionError("probe failed:\n" + "\n".join(self.seen) + context)
            if line.startswith(prefix):
                return line

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def field(line, name):
    m = re.search(rf"\b{name}=(\S+)", line)
    assert m, f"no {name}= in {line!r}"
    return m.group(1)


@pytest.fixture
def started(tmp_path):
    """Everything a test starts, stopped (by pid) however the test ends."""
    things = []
    yield things
    for thing in reversed(things):
        thing.stop()


def test_dpdk_backend_echo_and_session_after_restart(tmp_path, started):
    assert PROBE.exists(), f"{PROBE} is not built: run tools/setup.sh"
    sock = tmp_path / "net0.sock"
    probe = Probe(tmp_path, ["--socket", str(sock), "--sessions", "2"])
    started.append(probe)
    probe.expect("LISTENING")

    first = VhostTestpmd(tmp_path, sock, "testpmd-1").start()
    started.append(first)
    ctx = lambda t: "\n--- " + t.name + " log tail:\n" + t.log_text()[-3000:]  # noqa: E731
    probe.expect("CONNECTED 1", context=ctx(first))
    neg = probe.expect("NEGOTIATED 1", context=ctx(first))
    offered = int(field(neg, "offered"), 16)
    assert offered & (1 << 32), "DPDK offers VIRTIO_F_VERSION_1"
    assert offered & (1 << 30), "DPDK offers VHOST_USER_F_PROTOCOL_FEATURES"
    # REPLY_ACK and NET_MTU agreed (MQ was not asked for: one queue pair).
    assert field(neg, "protocol") == "0x18"
    usable = int(field(neg, "usable"), 16)
    assert usable == (1 << 32) | (1 << 15) | (1 << 3), f"usable {usable:#x}"
    start1 = probe.expect("STARTED 1", context=ctx(first))
    assert field(start1, "rx_base") == "0" and field(start1, "tx_base") == "0"
    probe.expect("ECHO 1", context=ctx(first))
    probe.expect("WAITING-DISCONNECT 1", context=ctx(first))

    log1 = first.log_text()
    # What DPDK's library itself recorded: the guest's features plus the transport bit
    # the guest never acks, and the agreed protocol features.
    assert f"negotiated Virtio features: {usable | (1 << 30):#x}" in log1, log1[-3000:]
    assert "negotiated Vhost-user protocol features: 0x18" in log1, log1[-3000:]
    assert "virtio is now ready for processing" in log1, log1[-3000:]

    first.kill()
    disc = probe.expect("DISCONNECTED 1", context=ctx(first))
    assert "the backend closed the connection" in disc

    second = VhostTestpmd(tmp_path, sock, "testpmd-2").start()
    started.append(second)
    probe.expect("CONNECTED 2", context=ctx(second))
    probe.expect("NEGOTIATED 2", context=ctx(second))
    start2 = probe.expect("STARTED 2", context=ctx(second))
    # The rings resume at the used indices in guest memory, not at 0.
    assert field(start2, "rx_base") == str(FRAMES), start2
    assert field(start2, "tx_base") == str(FRAMES), start2
    probe.expect("ECHO 2", context=ctx(second))
    stopped = probe.expect("STOPPED 2", context=ctx(second))
    # GET_VRING_BASE from the second backend: exactly both sessions' frames consumed,
    # so none of the first session's TX buffers was sent again.
    assert field(stopped, "rx_next_avail") == str(2 * FRAMES), stopped
    assert field(stopped, "tx_next_avail") == str(2 * FRAMES), stopped
    probe.expect("DONE")
    assert probe.proc.wait(timeout=30) == 0

    log2 = second.log_text()
    assert f"vring base idx:0 last_used_idx:{FRAMES} last_avail_idx:{FRAMES}" in log2, log2[-3000:]
    assert f"vring base idx:1 last_used_idx:{FRAMES} last_avail_idx:{FRAMES}" in log2, log2[-3000:]
    # DPDK resynchronises a base that disagrees with the used ring, and says so.
    assert "mismatches" not in log2, log2[-3000:]

    second.stop()
    stats = second.log_text()
    assert re.search(rf"RX-packets: {FRAMES}\s", stats), stats[-2000:]
    assert re.search(rf"TX-packets: {FRAMES}\s", stats), stats[-2000:]


def test_client_mode_retries_until_the_backend_listens(tmp_path, started):
    assert PROBE.exists(), f"{PROBE} is not built: run tools/setup.sh"
    sock = tmp_path / "backend.sock"
    # The frontend starts first and keeps retrying: nothing listens yet.
    probe = Probe(tmp_path, ["--socket", str(sock), "--client"])
    started.append(probe)
    probe.expect("CONNECTING")
    server = VhostTestpmd(tmp_path, sock, "testpmd-server", client=False).start()
    started.append(server)
    ctx = "\n--- testpmd log tail:\n"
    probe.expect("CONNECTED 1", context=ctx + server.log_text()[-3000:])
    probe.expect("ECHO 1", context=ctx + server.log_text()[-3000:])
    stopped = probe.expect("STOPPED 1", context=ctx + server.log_text()[-3000:])
    assert field(stopped, "rx_next_avail") == str(FRAMES)
    probe.expect("DONE")
    assert probe.proc.wait(timeout=30) == 0

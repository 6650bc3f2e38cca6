"""The store when the kernel refuses io_uring (DESIGN 3.3: the portable backend, same contract).

Container runtimes refuse io_uring by seccomp (Docker's default profile answers EPERM to
io_uring_setup, io_uring_enter and io_uring_register), and so do hardened kernels
(kernel.io_uring_disabled). This module starts the real posternd under such a seccomp filter,
installed in the child before exec, and checks that:
- with `backend = "auto"` the store falls back to the portable pwrite+fdatasync backend, says so
  (`store.io_uring_unavailable`), and keeps the durability contract through a kill -9;
- with `backend = "io_uring"` the daemon refuses to start and names io_uring;
- without the filter `auto` picks io_uring (so the filter, not the machine, makes the difference).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import platform
import smtplib
import struct

import pytest

from harness import ALICE, HOST, REMOTE_SENDER, make_message, strip_trace

# Generic syscall numbers, the same on x86_64 and aarch64 (Linux 5.1+).
IO_URING_SYSCALLS = (425, 426, 427)  # io_uring_setup, io_uring_enter, io_uring_register
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_KILL_PROCESS = 0x80000000
# Classic BPF opcodes (linux/filter.h).
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06
# struct seccomp_data: int nr; __u32 arch; ...
OFFSET_NR, OFFSET_ARCH = 0, 4


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _filter_program(arch: int) -> bytes:
    """EPERM for the io_uring syscalls, everything else allowed; a foreign ABI is killed."""
    prog = [
        _insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        _insn(BPF_JEQ_K, 1, 0, arch),
        _insn(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        _insn(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
    ]
    n = len(IO_URING_SYSCALLS)
    for i, nr in enumerate(IO_URING_SYSCALLS):
        # On a match jump to the EPERM return after the remaining checks and the ALLOW.
        prog.append(_insn(BPF_JEQ_K, n - i, 0, nr))
    prog.append(_insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    prog.append(_insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM))
    return b"".join(prog)


def refuse_io_uring() -> None:
    """preexec_fn: install the filter in the child (inherited across exec and by all threads
    created after it)."""
    arch = AUDIT_ARCH[platform.machine()]
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    code = _filter_program(arch)
    buf = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(code) // 8, ctypes.addressof(buf))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


@pytest.fixture(autouse=True)
def _supported_arch():
    if platform.machine() not in AUDIT_ARCH:
        pytest.fail(f"no seccomp filter for {platform.machine()}: add its AUDIT_ARCH value")


def opened_backend(log: str) -> str:
    """The backend of the last `store.opened` event in the daemon's log."""
    lines = [line for line in log.splitlines() if "store.opened" in line]
    assert lines, "no store.opened event in the log"
    last = lines[-1]
    for name in ("IoUring", "Portable"):
        if f"backend={name}" in last:
            return name
    raise AssertionError(f"no backend in {last!r}")


def test_auto_uses_io_uring_without_the_filter(make_server):
    srv = make_server(backend="auto")
    assert opened_backend(srv.log()) == "IoUring", srv.log_tail()
    assert "store.io_uring_unavailable" not in srv.log()


def test_auto_falls_back_and_keeps_acknowledged_mail_through_kill_9(make_server):
    srv = make_server(backend="auto", start=False)
    srv.preexec_fn = refuse_io_uring
    srv.start()
    log = srv.log()
    assert "store.io_uring_unavailable" in log, srv.log_tail()
    assert opened_backend(log) == "Portable", srv.log_tail()

    sent = []
    with smtplib.SMTP(HOST, srv.ports.mx, timeout=30) as s:
        for i in range(30):
            msg = make_message(f"refused io_uring {i}", f"body {i}\r\n".encode() * (i + 1))
            assert s.sendmail(REMOTE_SENDER, [ALICE], msg) == {}
            sent.append(msg)
        # The last 250 has just arrived: die before anything else can be flushed.
        srv.kill()

    srv.start()  # recovery, still without io_uring
    assert opened_backend(srv.log()) == "Portable"
    stored = [strip_trace(m) for m in srv.export(ALICE)]
    assert stored == sent


def test_forced_io_uring_refuses_to_start(make_server):
    srv = make_server(backend="io_uring", start=False)
    srv.preexec_fn = refuse_io_uring
    with pytest.raises(AssertionError, match="exited with"):
        srv.start(timeout=15)
    log = srv.log()
    assert "io_uring backend unavailable: Operation not permitted" in log, log[-2000:]
    assert 'backend = "auto"' in log, "the error should name the way out"
    assert "store.opened" not in log

"""Fixtures for the Postern system tests: a real posternd per test (or per module), provisioned
with domain example.test, users alice and bob, and alias team -> alice, bob."""

from __future__ import annotations

import os
import shutil

import pytest

import harness
from harness import Server

# Servers whose log is attached to the report of a failing test.
_ACTIVE: list[Server] = []

BACKENDS = ["io_uring", "portable"]
DEFAULT_BACKEND = os.environ.get("POSTERN_TEST_BACKEND", "io_uring")


def pytest_sessionstart(session):
    missing = [p for p in (harness.POSTERND, harness.POSTERN) if not p.is_file()]
    if missing:
        raise pytest.UsageError(
            f"binaries not found: {', '.join(map(str, missing))} "
            "(build with `cargo build -p posternd` or set POSTERN_BIN_DIR)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in list(_ACTIVE):
            srv.failed = True
            rep.sections.append((f"posternd log {srv.root.name}", srv.log_tail(300)))


class ServerFactory:
    def __init__(self, tmp_path_factory):
        self.tmp_path_factory = tmp_path_factory
        self.servers: list[Server] = []

    def __call__(self, backend: str = DEFAULT_BACKEND, smtp: dict | None = None,
                 tls_min_version: str = "1.2", start: bool = True, provision: bool = True,
                 sender_auth: dict | None = None, dns: dict | None = None) -> Server:
        root = self.tmp_path_factory.mktemp("srv")
        srv = Server(root, backend=backend, smtp=smtp, tls_min_version=tls_min_version,
                     provision=provision, sender_auth=sender_auth, dns=dns)
        self.servers.append(srv)
        _ACTIVE.append(srv)
        if start:
            srv.start()
        return srv

    def close(self):
        for srv in self.servers:
            try:
                srv.stop()
            finally:
                if srv in _ACTIVE:
                    _ACTIVE.remove(srv)
                if not srv.failed:
                    # Data dirs can be large (crash and size tests); keep only failing ones.
                    shutil.rmtree(srv.root, ignore_errors=True)


@pytest.fixture
def make_server(tmp_path_factory):
    """Factory for fresh servers: make_server(backend=..., smtp={...limits...})."""
    f = ServerFactory(tmp_path_factory)
    yield f
    f.close()


@pytest.fixture
def server(make_server):
    """A fresh running server (default backend, default limits)."""
    return make_server()


@pytest.fixture(params=BACKENDS)
def backend_server(request, make_server):
    """A fresh running server, once per store backend."""
    return make_server(backend=request.param)


@pytest.fixture(scope="module")
def shared_server(module_factory):
    """One running server shared by a module's tests that never look at the store."""
    return module_factory()


@pytest.fixture(scope="module")
def module_factory(tmp_path_factory):
    """Factory for servers shared by one module (custom limits), stopped at module end."""
    f = ServerFactory(tmp_path_factory)
    yield f
    f.close()


def pytest_collection_modifyitems(session, config, items):
    """Run the long crash rounds last, so protocol failures show up first."""
    items.sort(key=lambda it: it.nodeid.split("::")[0].endswith("test_crash.py"))

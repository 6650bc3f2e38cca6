"""Fixtures for the POP3 system tests."""

import pytest

from pop3_helpers import with_pop3_config


@pytest.fixture(scope="module")
def pop3_limited(module_factory):
    """A server with small POP3 limits: the minimum line length (RFC 2449 4), a 2-second
    login timer, few errors, two connections per IP."""
    srv = module_factory(start=False)
    with_pop3_config(srv, max_command_line=255, timeout_login_secs=2, max_errors=4,
                     max_connections_per_ip=2)
    srv.start()
    return srv

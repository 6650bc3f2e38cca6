"""tests/qemu: attach the guest's hwmond log and console to the report of a failing test."""

from __future__ import annotations

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    env = getattr(item, "funcargs", {}).get("env")
    if env is None:
        return
    try:
        rep.sections.append(("guest hwmond log (tail)", env.hwmond_log()))
    except Exception as e:  # noqa: BLE001 - diagnostics must not hide the failure itself
        rep.sections.append(("guest hwmond log", f"unavailable: {e}"))
    rep.sections.append(("guest console", env.guest.console()[-4000:]))

"""tests/qemu: attach the guest's hwmond or posternd log and console to the report of a failing
test (the module fixture `env` of each test module)."""

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
    for method, title in (("hwmond_log", "guest hwmond log (tail)"),
                          ("posternd_log", "guest posternd log (tail)")):
        if not hasattr(env, method):
            continue
        try:
            rep.sections.append((title, getattr(env, method)()))
        except Exception as e:  # noqa: BLE001 - diagnostics must not hide the failure itself
            rep.sections.append((title, f"unavailable: {e}"))
    rep.sections.append(("guest console", env.guest.console()[-4000:]))

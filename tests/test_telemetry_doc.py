"""docs/TELEMETRY.md names every tracing event posternd and hwmond emit and every metric
posternd registers, and nothing the code no longer emits. No server needed."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "TELEMETRY.md"

# `pub const BARE_LF: &str = "smtp.reject.bare_lf";` in an `events` module.
CONST = re.compile(r'pub const [A-Z0-9_]+: &str = "([a-z0-9_]+\.[a-z0-9_.]+)"')
# `tracing::info!(event = "server.ready", ...)`.
FIELD = re.compile(r'event = "([a-z0-9_.]+)"')
# `registry.register("postern_smtp_connections", ...)`, the name on the next line or the same.
REGISTER = re.compile(r'\.register\(\s*"([a-z0-9_]+)"')
# Names in the doc: backquoted dotted lowercase names and postern_ metric names.
DOC_EVENT = re.compile(r"`([a-z0-9_]+(?:\.[a-z0-9_]+)+)`")
DOC_METRIC = re.compile(r"`(postern_[a-z0-9_]+)`")

# Events named by a function rather than a literal (daemon/posternd/src/login.rs:
# `<service>.auth.succeeded` / `<service>.auth.failed`, service one of smtp, imap, pop3).
LOGIN_SERVICES = ("smtp", "imap", "pop3")


def sources(*dirs):
    for d in dirs:
        for p in sorted((ROOT / d).rglob("*.rs")):
            rel = p.relative_to(ROOT).parts
            if "target" in rel:
                continue
            yield p


def code_events():
    names = set()
    for p in sources("daemon", "hwmon"):
        text = p.read_text(errors="replace")
        if "mod events" in text:
            names.update(CONST.findall(text))
        names.update(FIELD.findall(text))
    for s in LOGIN_SERVICES:
        names.update({f"{s}.auth.succeeded", f"{s}.auth.failed"})
    return names


def code_metrics():
    names = set()
    for p in sources("daemon/posternd/src"):
        names.update(REGISTER.findall(p.read_text(errors="replace")))
    return names


def doc_text():
    return DOC.read_text()


def test_sources_found():
    # Guard against the patterns silently matching nothing after a refactor.
    assert len(code_events()) > 100
    assert "smtp.message.accepted" in code_events()
    assert "postern_smtp_connections" in code_metrics()
    assert len(code_metrics()) > 20


def test_every_event_documented():
    doc = set(DOC_EVENT.findall(doc_text()))
    missing = sorted(code_events() - doc)
    assert not missing, "events emitted but missing from docs/TELEMETRY.md: " + ", ".join(missing)


def test_no_stale_events():
    # Only names in the event tables count: rows that start with a backquoted event name.
    listed = set(re.findall(r"^\| `([a-z0-9_]+(?:\.[a-z0-9_]+)+)` \|", doc_text(), re.M))
    stale = sorted(listed - code_events())
    assert not stale, "docs/TELEMETRY.md lists events the code no longer emits: " + ", ".join(stale)


def test_every_metric_documented():
    doc = set(DOC_METRIC.findall(doc_text()))
    missing = sorted(code_metrics() - doc)
    assert not missing, "metrics registered but missing from docs/TELEMETRY.md: " + ", ".join(missing)


def test_no_stale_metrics():
    listed = set(re.findall(r"^\| `(postern_[a-z0-9_]+)`", doc_text(), re.M))
    # hwmond's own postern_hwmon_* series are not in posternd's registry.
    listed = {m for m in listed if not m.startswith("postern_hwmon_")}
    stale = sorted(listed - code_metrics())
    assert not stale, "docs/TELEMETRY.md lists metrics posternd no longer registers: " + ", ".join(stale)

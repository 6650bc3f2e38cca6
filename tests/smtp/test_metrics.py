"""Prometheus metrics: names, histogram shape, counters that move with traffic."""

import re
import smtplib
import urllib.error
import urllib.request

from harness import (ALICE, HOST, REMOTE_SENDER, RawSMTP, make_message, metric_sum,
                     parse_metrics)


def deliver_one(srv):
    with smtplib.SMTP(HOST, srv.ports.mx, timeout=15) as s:
        assert s.sendmail(REMOTE_SENDER, [ALICE], make_message("metrics")) == {}


def reject_some(srv):
    with RawSMTP(srv.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        assert c.cmd("RCPT TO:<victim@remote.test>").code == 550
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(make_message("smuggle", b"a\n.\nb\r\n") + b".\r\n")
        assert 500 <= c.reply().code < 600


def test_metrics_names_and_movement(server):
    before_text = server.metrics()
    before = parse_metrics(before_text)
    deliver_one(server)
    reject_some(server)
    text = server.metrics()
    after = parse_metrics(text)

    for name in ("postern_smtp_connections_total", "postern_smtp_messages_accepted_total",
                 "postern_smtp_messages_rejected_total", "postern_store_commit_batch_size",
                 "postern_store_commit_latency_seconds"):
        # Prometheus text or OpenMetrics (whose TYPE line names the family without _total).
        family = name.removesuffix("_total")
        assert re.search(rf"^# TYPE {family}(_total)? ", text, re.M), f"no TYPE line for {name}"
        assert re.search(rf"^{name}(_bucket|_count|_sum)?[{{ ]", text, re.M), f"no samples of {name}"

    assert re.search(r'^postern_smtp_messages_rejected_total\{[^}]*reason="[^"]+"[^}]*\} \S+$', text,
                     re.M), "rejected counter without a reason label"
    buckets = [l for l in text.splitlines()
               if l.startswith("postern_store_commit_latency_seconds_bucket{")]
    assert buckets and any('le="+Inf"' in l for l in buckets), buckets
    assert metric_sum(after, "postern_store_commit_latency_seconds_count") >= 1
    assert metric_sum(after, "postern_store_commit_batch_size_count") >= 1 or \
        metric_sum(after, "postern_store_commit_batch_size") >= 1

    # Our own connections: readiness probes + 2 sessions; at least 2 more than before.
    assert metric_sum(after, "postern_smtp_connections_total") >= \
        metric_sum(before, "postern_smtp_connections_total") + 2
    assert metric_sum(after, "postern_smtp_messages_accepted_total") == \
        metric_sum(before, "postern_smtp_messages_accepted_total") + 1
    assert metric_sum(after, "postern_smtp_messages_rejected_total") >= \
        metric_sum(before, "postern_smtp_messages_rejected_total") + 1
    lat = "postern_store_commit_latency_seconds"
    assert metric_sum(after, lat + "_count") >= metric_sum(before, lat + "_count") + 1
    inf = sum(v for k, v in after.items() if k.startswith(lat + "_bucket{") and 'le="+Inf"' in k)
    assert inf == metric_sum(after, lat + "_count")


def test_metrics_unknown_path_404(shared_server):
    try:
        urllib.request.urlopen(f"http://{HOST}:{shared_server.ports.metrics}/nope", timeout=10)
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as e:
        assert e.code == 404


def test_metrics_content_type_matches_format(shared_server):
    """OpenMetrics bodies (TYPE on the family name without _total, '# EOF') must be served as
    application/openmetrics-text; a text/plain 0.0.4 body must name counters with _total in TYPE.
    Otherwise Prometheus' classic parser drops the type metadata of every counter."""
    url = f"http://{HOST}:{shared_server.ports.metrics}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        ctype = r.headers.get("Content-Type", "")
        body = r.read().decode()
    if body.rstrip().endswith("# EOF"):
        assert ctype.startswith("application/openmetrics-text"), ctype
    else:
        assert ctype.startswith("text/plain"), ctype
        assert re.search(r"^# TYPE postern_smtp_connections_total counter", body, re.M), body[:500]

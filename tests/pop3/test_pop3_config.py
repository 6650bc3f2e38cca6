"""The [pop3] section: RFC minimums and bad values are refused by `postern config check` with
the file and line."""

import pytest

from harness import Ports, render_config, run_cli


def write_cfg(tmp_path, pop3: str):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    text = render_config(data, Ports.allocate()) + "\n[pop3]\n" + pop3 + "\n"
    p = tmp_path / "postern.toml"
    p.write_text(text)
    return p, text


def check(cfg):
    p = run_cli(None, "config", "check", str(cfg), check=False)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def test_pop3_section_accepted(tmp_path):
    cfg, _ = write_cfg(tmp_path, "max_command_line = 255\ntimeout_secs = 600\n"
                                 "timeout_login_secs = 1\nmax_errors = 1")
    rc, out = check(cfg)
    assert rc == 0, out


@pytest.mark.parametrize("bad", [
    "max_command_line = 254",      # RFC 2449 4: at least 255 octets
    "timeout_secs = 599",          # RFC 1939 3: at least 10 minutes
    "timeout_login_secs = 0",
    "max_errors = 0",
    "max_connections_per_ip = 0",
    "apop = true",                 # unknown key
])
def test_pop3_bad_values_report_file_and_line(tmp_path, bad):
    cfg, text = write_cfg(tmp_path, bad)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if l == bad)
    rc, out = check(cfg)
    assert rc != 0, out
    assert f"{cfg}:{line}:" in out, out

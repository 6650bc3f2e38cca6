"""`postern config check` and posternd's handling of bad configuration."""

import subprocess

import pytest

from harness import POSTERND, Ports, render_config, run_cli


def write_cfg(tmp_path, extra_smtp: str = "", name="postern.toml"):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    text = render_config(data, Ports.allocate())
    if extra_smtp:
        key = extra_smtp.split("=")[0].strip()
        # Replace the key if the rendered config has it (TOML forbids duplicates), else add it.
        lines = [l for l in text.split("\n") if l.split("=")[0].strip() != key]
        text = "\n".join(lines).replace("[smtp]\n", "[smtp]\n" + extra_smtp + "\n", 1)
    p = tmp_path / name
    p.write_text(text)
    return p, text


def line_of(text: str, needle: str) -> int:
    for i, l in enumerate(text.splitlines(), 1):
        if needle in l:
            return i
    raise AssertionError(needle)


def test_valid_config_ok(tmp_path):
    cfg, _ = write_cfg(tmp_path)
    p = run_cli(None, "config", "check", str(cfg), check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    # The same via --config.
    p = run_cli(cfg, "config", "check", check=False)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("bad,needle", [
    ("bogus_key = 1", "bogus_key"),
    ('max_recipients = "many"', ""),
    ("max_recipients = -5", ""),
])
def test_bad_key_reports_file_and_line(tmp_path, bad, needle):
    cfg, text = write_cfg(tmp_path, bad)
    line = line_of(text, bad)
    p = run_cli(None, "config", "check", str(cfg), check=False)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode != 0, out
    assert f"{cfg}:{line}:" in out, out
    assert needle in out, out


def test_unknown_listener_kind(tmp_path):
    cfg, text = write_cfg(tmp_path)
    text = text.replace('kind = "submission"', 'kind = "smtps-ish"')
    cfg.write_text(text)
    p = run_cli(None, "config", "check", str(cfg), check=False)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode != 0, out
    assert f"{cfg}:{line_of(text, 'smtps-ish')}:" in out, out


def test_unknown_section(tmp_path):
    cfg, text = write_cfg(tmp_path)
    text = text + "\n[nonsense]\nx = 1\n"
    cfg.write_text(text)
    p = run_cli(None, "config", "check", str(cfg), check=False)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode != 0, out
    assert f"{cfg}:{line_of(text, '[nonsense]')}:" in out, out


@pytest.mark.parametrize("key,value", [("max_recipients", 99), ("max_command_line", 511),
                                       ("max_data_line", 999), ("max_message_size", 65535)])
def test_below_rfc_minimum_refused(tmp_path, key, value):
    """RFC 5321 4.5.3.1 minimums cannot be configured away."""
    cfg, text = write_cfg(tmp_path, f"{key} = {value}")
    p = run_cli(None, "config", "check", str(cfg), check=False)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode != 0, out
    assert f"{cfg}:{line_of(text, f'{key} = {value}')}:" in out, out


def test_syntax_error_reports_line(tmp_path):
    cfg, text = write_cfg(tmp_path)
    text = text.replace("[smtp]\n", "[smtp]\nmax_recipients = = 3\n", 1)
    cfg.write_text(text)
    p = run_cli(None, "config", "check", str(cfg), check=False)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode != 0
    assert f"{cfg}:{line_of(text, '= = 3')}:" in out, out


def test_missing_file(tmp_path):
    p = run_cli(None, "config", "check", str(tmp_path / "nope.toml"), check=False)
    assert p.returncode != 0
    assert b"nope.toml" in p.stdout + p.stderr


def test_daemon_refuses_bad_config(tmp_path):
    cfg, _ = write_cfg(tmp_path, "bogus_key = 1")
    p = subprocess.run([str(POSTERND), "--config", str(cfg)], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode != 0, out
    assert "bogus_key" in out, out


def test_relative_data_dir(tmp_path):
    """data_dir relative to the config file's directory, whatever the working directory."""
    from harness import Server
    srv = Server(tmp_path / "rel", provision=False)
    text = srv.cfg.read_text().replace(f'data_dir = "{srv.data_dir}"', 'data_dir = "reldata"')
    srv.cfg.write_text(text)
    run_cli(srv.cfg, "domain", "add", "example.test")
    assert (srv.root / "reldata").is_dir()
    srv.data_dir = srv.root / "reldata"
    srv.start()
    try:
        assert (srv.root / "reldata" / "tls").is_dir()
    finally:
        srv.stop()

import subprocess
import sys

import osmarkets
from osmarkets.cli import first_line, main


def test_version_flag(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert osmarkets.__version__ in capsys.readouterr().out


def test_python_m_help_lists_usage():
    out = subprocess.run(
        [sys.executable, "-m", "osmarkets", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "usage: osmarkets" in out


def test_unknown_command_exits_non_zero():
    proc = subprocess.run(
        [sys.executable, "-m", "osmarkets", "no-such-command"], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "invalid choice" in proc.stderr


def test_import_osmarkets_does_not_load_osbrain_until_an_architecture_is_used():
    code = (
        "import sys, osmarkets; assert 'osbrain' not in sys.modules; "
        "from osmarkets import SimulatedArchitecture; assert 'osbrain' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_first_line_of_an_error_message():
    assert first_line(ValueError("fast: expected > 0\nsecond line")) == "fast: expected > 0"
    assert first_line(ValueError()) == "ValueError"  # an empty message still says something

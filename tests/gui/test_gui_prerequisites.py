"""The check of the system libraries Qt's xcb platform plugin needs, before Qt loads it (and
aborts the process with exit status 134 when one is missing): with a simulated missing
library, the packages to install are named in one line and ``osmarkets gui`` exits with
status 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from osmarkets.gui import prerequisites
from osmarkets.gui.prerequisites import (
    XCB_LIBRARIES,
    check_prerequisites,
    fedora_packages,
    missing_libraries,
    prerequisites_error,
    qt_platform,
)

X11 = {"DISPLAY": ":0"}


def all_found(name: str) -> str:
    return f"lib{name}.so.0"


def without(*absent: str) -> Any:
    """A find_library that finds every library but ``absent`` (and records the names asked)."""
    asked: list[str] = []

    def find(name: str) -> str | None:
        asked.append(name)
        return None if name in absent else all_found(name)

    find.asked = asked  # type: ignore[attr-defined]
    return find


def never_called(name: str) -> str | None:
    raise AssertionError(f"find_library({name!r}) called for a platform that is not checked")


def test_a_missing_xcb_cursor_names_its_debian_package() -> None:
    find = without("xcb-cursor")
    assert missing_libraries("xcb", find=find, system="linux") == ["libxcb-cursor0"]
    assert "xcb-cursor" in find.asked and "xcb-icccm" in find.asked


def test_the_libraries_of_a_stock_debian_are_all_named() -> None:
    find = without("xcb-cursor", "xcb-icccm", "xcb-keysyms")
    missing = missing_libraries(environ=X11, find=find, system="linux")
    assert missing == ["libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"]
    assert fedora_packages(missing) == ["xcb-util-cursor", "xcb-util-wm", "xcb-util-keysyms"]
    # several libxcb sonames are one Fedora package, named once
    assert fedora_packages(["libxcb-randr0", "libxcb-shm0", "libxcb1"]) == ["libxcb"]


def test_nothing_missing_is_an_empty_list() -> None:
    assert missing_libraries("xcb", find=all_found, system="linux") == []
    assert missing_libraries(environ=X11, find=all_found, system="linux") == []
    assert prerequisites_error(environ=X11, find=all_found, system="linux") is None
    check_prerequisites(environ=X11, find=all_found, system="linux")


@pytest.mark.parametrize("platform", ["offscreen", "minimal", "wayland", "OFFSCREEN", "vnc"])
def test_other_platforms_are_not_checked(platform: str) -> None:
    assert missing_libraries(platform, find=never_called, system="linux") == []
    environ = {**X11, "QT_QPA_PLATFORM": platform}
    assert missing_libraries(environ=environ, find=never_called, system="linux") == []


@pytest.mark.parametrize("system", ["darwin", "win32"])
def test_other_systems_are_not_checked(system: str) -> None:
    assert missing_libraries("xcb", find=never_called, system=system) == []
    assert missing_libraries(environ=X11, find=never_called, system=system) == []


def test_which_platform_qt_will_load() -> None:
    linux = {"system": "linux"}
    assert qt_platform({"DISPLAY": ":0"}, **linux) == "xcb"
    assert qt_platform({"QT_QPA_PLATFORM": "xcb"}, **linux) == "xcb"  # explicit: no DISPLAY needed
    assert qt_platform({"QT_QPA_PLATFORM": "xcb:nograb", "DISPLAY": ":1"}, **linux) == "xcb"
    assert qt_platform({}, **linux) is None  # no X server: nothing to check
    assert qt_platform({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, **linux) is None
    assert qt_platform({"QT_QPA_PLATFORM": "xcb;offscreen"}, **linux) is None  # Qt falls back
    wayland = {"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}
    assert qt_platform(wayland, **linux) is None
    assert qt_platform({**wayland, "QT_QPA_PLATFORM": "xcb"}, **linux) == "xcb"
    assert qt_platform({"DISPLAY": ":0"}, system="darwin") is None


def test_the_error_is_one_line_with_the_apt_and_dnf_commands() -> None:
    find = without("xcb-cursor", "xcb-icccm")
    line = prerequisites_error(environ=X11, find=find, system="linux")
    assert line is not None and "\n" not in line
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4 " in line
    assert "sudo dnf install xcb-util-cursor xcb-util-wm;" in line
    assert "docs/gui.rst" in line and "QT_QPA_PLATFORM=offscreen" in line
    with pytest.raises(RuntimeError, match=r"^osmarkets gui: .*apt-get install libxcb-cursor0"):
        check_prerequisites(environ=X11, find=find, system="linux")


def test_the_default_finder_is_ctypes_find_library(monkeypatch: pytest.MonkeyPatch) -> None:
    find = without("xcb-keysyms")
    monkeypatch.setattr(prerequisites.ctypes.util, "find_library", find)
    assert missing_libraries("xcb", system="linux") == ["libxcb-keysyms1"]
    monkeypatch.setattr(prerequisites.sys, "platform", "linux")
    monkeypatch.setattr(prerequisites.os, "environ", {"DISPLAY": ":0"})
    assert missing_libraries() == ["libxcb-keysyms1"]


def test_every_library_has_a_debian_and_a_fedora_package() -> None:
    names = [library.name for library in XCB_LIBRARIES]
    assert len(names) == len(set(names))
    for library in XCB_LIBRARIES:
        assert library.debian and library.fedora and not library.name.startswith("lib")


# -- the entry paths: ``osmarkets gui``, add_gui, and the QApplication of run_gui ---------------

needs_qt = pytest.mark.skipif(
    subprocess.run(
        [sys.executable, "-c", "import pyqtgraph; from PySide6 import QtWidgets"],
        capture_output=True,
    ).returncode
    != 0,
    reason="PySide6 or pyqtgraph cannot be imported here",
)


def xcb_environ(monkeypatch: pytest.MonkeyPatch, *absent: str) -> None:
    """This process as on an X11 desktop where the libraries ``absent`` are missing."""
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(prerequisites.sys, "platform", "linux")
    monkeypatch.setattr(prerequisites.ctypes.util, "find_library", without(*absent))


@needs_qt
def test_the_cli_prints_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    from osmarkets.cli import main

    monkeypatch.setenv("OSMARKETS_REGISTRY_DIR", str(tmp_path))
    xcb_environ(monkeypatch, "xcb-cursor")
    assert main(["gui", "--demo"]) == 2  # checked before the demo architecture is started
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("osmarkets gui: Qt's xcb platform needs system libraries")
    assert "sudo apt-get install libxcb-cursor0 (" in captured.err
    assert "Traceback" not in captured.err + captured.out


@needs_qt
def test_add_gui_raises_before_starting_a_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from osmarkets.gui import add_gui

    class NoSystem:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"system.{name} used although the GUI cannot start")

    xcb_environ(monkeypatch, "xcb-icccm")
    with pytest.raises(RuntimeError, match="apt-get install libxcb-icccm4"):
        add_gui(NoSystem())
    xcb_environ(monkeypatch)
    monkeypatch.setattr(prerequisites.ctypes.util, "find_library", never_called)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    from osmarkets.gui.app import qt_error

    assert qt_error() is None
    assert qt_error("offscreen") is None


# The real command and the real QApplication in a fresh interpreter: find_library is replaced
# there so that one library looks missing (the xcb plugin is never loaded: no X server needed).
SIMULATE = """
import ctypes.util, sys
real = ctypes.util.find_library
ctypes.util.find_library = lambda name: None if name == "xcb-cursor" else (real(name) or name)
"""


def run_python(code: str, tmp_path: Any) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")
    }
    environ.update(DISPLAY=":0", OSMARKETS_REGISTRY_DIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SIMULATE) + textwrap.dedent(code)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_qt
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb platform is Linux's")
def test_osmarkets_gui_exits_2_with_one_line_instead_of_aborting(tmp_path: Any) -> None:
    done = run_python(
        """
        from osmarkets.cli import main
        sys.exit(main(["gui", "--demo"]))
        """,
        tmp_path,
    )
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "sudo apt-get install libxcb-cursor0 " in done.stderr
    assert done.stdout == ""


@needs_qt
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb platform is Linux's")
def test_the_qapplication_is_not_created(tmp_path: Any) -> None:
    done = run_python(
        """
        from osmarkets.gui.app import application
        try:
            application()
        except RuntimeError as exc:
            print(exc)
            from PySide6 import QtWidgets
            sys.exit(3 if QtWidgets.QApplication.instance() is None else 4)
        """,
        tmp_path,
    )
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
    assert done.stdout.startswith("osmarkets gui: ") and "libxcb-cursor0" in done.stdout

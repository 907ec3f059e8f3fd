"""The system libraries Qt's xcb platform plugin needs, checked before Qt loads it.

On Linux under X11, Qt loads its ``xcb`` platform plugin when the first ``QApplication`` is
created; if one of the shared libraries the plugin links is missing, Qt prints a
``qt.qpa.plugin: Could not load the Qt platform plugin "xcb"`` message and aborts the process
(SIGABRT, exit status 134), which no ``try`` can catch. A stock Debian or Ubuntu desktop lacks
some of them (``libxcb-cursor0``, ``libxcb-icccm4``, ``libxcb-keysyms1``...). This module looks
for them with :func:`ctypes.util.find_library` first and names the packages to install.

The list is what PySide6 6.x's ``plugins/platforms/libqxcb.so`` and ``lib/libQt6XcbQpa.so.6``
link (``readelf -d``), minus what ``QtGui`` itself needs (EGL, GL, fontconfig, freetype: a
missing one of those already fails ``from PySide6 import QtWidgets`` with an ``OSError``).
Only the xcb platform is checked: ``offscreen``, ``minimal``, ``wayland`` and the other
platforms, macOS and Windows need nothing here.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Callable, Mapping
from typing import NamedTuple

__all__ = [
    "XCB_LIBRARIES",
    "XcbLibrary",
    "check_prerequisites",
    "fedora_packages",
    "missing_libraries",
    "prerequisites_error",
    "qt_platform",
]


class XcbLibrary(NamedTuple):
    """A shared library of the xcb plugin: its name for :func:`ctypes.util.find_library`
    (``lib<name>.so``) and the packages that install it."""

    name: str
    debian: str
    fedora: str


# In the order an apt-get line reads best: the ones a stock desktop usually lacks first.
XCB_LIBRARIES: tuple[XcbLibrary, ...] = (
    XcbLibrary("xcb-cursor", "libxcb-cursor0", "xcb-util-cursor"),
    XcbLibrary("xcb-icccm", "libxcb-icccm4", "xcb-util-wm"),
    XcbLibrary("xcb-keysyms", "libxcb-keysyms1", "xcb-util-keysyms"),
    XcbLibrary("xcb-image", "libxcb-image0", "xcb-util-image"),
    XcbLibrary("xcb-render-util", "libxcb-render-util0", "xcb-util-renderutil"),
    XcbLibrary("xcb-util", "libxcb-util1", "xcb-util"),
    XcbLibrary("xkbcommon-x11", "libxkbcommon-x11-0", "libxkbcommon-x11"),
    XcbLibrary("xkbcommon", "libxkbcommon0", "libxkbcommon"),
    XcbLibrary("xcb-randr", "libxcb-randr0", "libxcb"),
    XcbLibrary("xcb-render", "libxcb-render0", "libxcb"),
    XcbLibrary("xcb-shape", "libxcb-shape0", "libxcb"),
    XcbLibrary("xcb-shm", "libxcb-shm0", "libxcb"),
    XcbLibrary("xcb-sync", "libxcb-sync1", "libxcb"),
    XcbLibrary("xcb-xfixes", "libxcb-xfixes0", "libxcb"),
    XcbLibrary("xcb-xkb", "libxcb-xkb1", "libxcb"),
    XcbLibrary("xcb", "libxcb1", "libxcb"),
    XcbLibrary("X11-xcb", "libx11-xcb1", "libX11-xcb"),
    XcbLibrary("X11", "libx11-6", "libX11"),
)

Finder = Callable[[str], "str | None"]


def qt_platform(
    environ: Mapping[str, str] | None = None, *, system: str | None = None
) -> str | None:
    """The Qt platform plugin a new ``QApplication`` will load when it is one this module
    checks (``'xcb'``), else None: ``QT_QPA_PLATFORM`` is ``xcb``, or it is unset on Linux
    with ``DISPLAY`` set and not in a Wayland session. A list with fallbacks
    (``'xcb;offscreen'``) is not checked: Qt tries the next one itself. ``environ``: default
    ``os.environ``; ``system``: default ``sys.platform``."""
    environ = os.environ if environ is None else environ
    system = sys.platform if system is None else system
    if not system.startswith("linux"):
        return None
    wanted = environ.get("QT_QPA_PLATFORM", "").strip()
    if wanted:
        choices = [part.split(":", 1)[0].strip().lower() for part in wanted.split(";")]
        return "xcb" if [c for c in choices if c] == ["xcb"] else None
    if not environ.get("DISPLAY"):
        return None  # no X server: Qt says so itself (or the platform is set elsewhere)
    if environ.get("WAYLAND_DISPLAY") and environ.get("XDG_SESSION_TYPE") == "wayland":
        return None  # Qt 6 picks its wayland plugin first in a Wayland session
    return "xcb"


def missing_libraries(
    platform: str | None = None,
    *,
    find: Finder | None = None,
    environ: Mapping[str, str] | None = None,
    system: str | None = None,
) -> list[str]:
    """The Debian/Ubuntu packages to install for the Qt platform plugin to load, ``[]`` when
    nothing is missing or the platform is not checked. ``platform``: the Qt platform plugin
    (default: the one :func:`qt_platform` expects from ``environ``); only ``'xcb'`` (on
    Linux) is checked. ``find``: the library lookup (default :func:`ctypes.util.find_library`,
    given names like ``'xcb-cursor'``)."""
    system = sys.platform if system is None else system
    if platform is None:
        platform = qt_platform(environ, system=system)
    if platform is None or platform.lower() != "xcb" or not system.startswith("linux"):
        return []
    find = ctypes.util.find_library if find is None else find
    packages: list[str] = []
    for library in XCB_LIBRARIES:
        if not find(library.name) and library.debian not in packages:
            packages.append(library.debian)
    return packages


def fedora_packages(debian: list[str]) -> list[str]:
    """The Fedora (dnf) packages of the same libraries as the Debian ``debian`` ones."""
    names: list[str] = []
    for library in XCB_LIBRARIES:
        if library.debian in debian and library.fedora not in names:
            names.append(library.fedora)
    return names


def prerequisites_error(
    platform: str | None = None,
    *,
    find: Finder | None = None,
    environ: Mapping[str, str] | None = None,
    system: str | None = None,
) -> str | None:
    """One line naming the packages to install when the Qt platform plugin's system libraries
    are missing (see :func:`missing_libraries` for the arguments), else None."""
    missing = missing_libraries(platform, find=find, environ=environ, system=system)
    if not missing:
        return None
    return (
        "Qt's xcb platform needs system libraries that are missing: install them with: "
        f"sudo apt-get install {' '.join(missing)} (Fedora: sudo dnf install "
        f"{' '.join(fedora_packages(missing))}; see docs/gui.rst; or run headless with "
        "QT_QPA_PLATFORM=offscreen)"
    )


def check_prerequisites(
    platform: str | None = None,
    *,
    find: Finder | None = None,
    environ: Mapping[str, str] | None = None,
    system: str | None = None,
) -> None:
    """Raise :class:`RuntimeError` with one line naming the packages to install when the Qt
    platform plugin cannot load for want of system libraries (instead of Qt aborting the
    process); nothing otherwise. Arguments as :func:`missing_libraries`."""
    error = prerequisites_error(platform, find=find, environ=environ, system=system)
    if error is not None:
        raise RuntimeError(f"osmarkets gui: {error}")

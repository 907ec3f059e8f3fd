"""The Logger agent: osBrain's Logger with a bounded memory and an optional log file."""

from __future__ import annotations

import os
from collections import deque
from typing import Any

import osbrain

from .base import start_orphan_guard


class LoggerAgent(osbrain.Logger):
    """Receives every agent's log lines (PUB/SUB, topics INFO, WARNING, ERROR, DEBUG).

    Attributes set at start: ``osm_log_path`` (append every line to this file),
    ``osm_cfg`` (the architecture's transport, ipc directory and owner process).
    """

    osm_cfg: dict[str, Any]

    def on_init(self) -> None:
        limit = 10_000
        self.log_history: deque[str] = deque(maxlen=limit)
        self.log_history_info: deque[str] = deque(maxlen=limit)
        self.log_history_warning: deque[str] = deque(maxlen=limit)
        self.log_history_error: deque[str] = deque(maxlen=limit)
        self.log_history_debug: deque[str] = deque(maxlen=limit)
        cfg = getattr(self, "osm_cfg", None) or {}
        self.osm_cfg = cfg
        start_orphan_guard(cfg.get("parent_pid"))
        path = cfg.get("osm_log_path")
        self._osm_file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        handlers = dict.fromkeys(("INFO", "WARNING", "ERROR", "DEBUG"), self.log_handler)
        addr = None
        if cfg.get("transport", "ipc") == "ipc" and cfg.get("ipc_dir"):
            addr = os.path.join(cfg["ipc_dir"], f"{self.name}-sub")  # removed with the rest
        elif cfg.get("transport") == "tcp":
            addr = cfg.get("host", "127.0.0.1")
        self.bind("SUB", "sub", handlers, addr=addr, transport=cfg.get("transport"))

    def shutdown(self) -> None:
        self.stop_all_timers()  # a timer firing after the loop ended raises in its thread
        super().shutdown()

    def log_handler(self, message: str, topic: bytes) -> None:
        try:
            super().log_handler(message, topic)
            if self._osm_file is not None:
                self._osm_file.write(f"{topic.decode()} {message}\n")
                self._osm_file.flush()
        except Exception:  # a logging failure must not stop the logger's loop
            pass

    def recent(self, level: str = "", count: int = 50) -> list[str]:
        """The last ``count`` lines (of one level, if given)."""
        source = getattr(self, f"log_history_{level.lower()}", None) if level else None
        return list(source if source is not None else self.log_history)[-count:]

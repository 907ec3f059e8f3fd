"""Crash recovery with the lock-step in runs: a Brain killed while it handles a run, in the
middle of a step in which it decided an order (before its acknowledgement) or after that
acknowledgement and its orders but before its recovery point, is restarted and the simulation
still ends with exactly the in-process backtest's fills: no order lost, none doubled, none run
at another step."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_bars, pid_alive, wait_for
from test_lockstep_runs import _fills

from osmarkets.backtest import backtest
from osmarkets.strategies import SmaCross

M1 = ("EUR_USD", 1, "Minutes")


class Stalls(SmaCross):
    """SmaCross that stops for a while (long enough to be killed) once, in a lock-step run, at
    its ``nth`` order of a run: right after deciding it (``where='order'``) or while its
    recovery point is stored after the run's acknowledgement (``where='save'``). ``marker``: a
    file made when it stops, so that the next process does not stop again."""

    marker = ""
    where = "order"
    nth = 6
    run_orders = 0
    stall_at_save = False

    def send_order(self, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
        client_id = super().send_order(*args, **kwargs)
        if getattr(self, "_osm_outbox", None) is not None:  # a run's bar
            self.run_orders += 1
            if self.run_orders == self.nth and not os.path.exists(self.marker):
                if self.where == "order":
                    self._stall()
                else:
                    self.stall_at_save = True
        return client_id

    def on_save(self) -> None:
        if self.stall_at_save:
            self.stall_at_save = False
            self._stall()
        return None

    def _stall(self) -> None:
        Path(self.marker).write_text(str(os.getpid()))
        time.sleep(60)


@pytest.mark.parametrize("where", ["order", "save"])
def test_brain_killed_in_a_run_step_gives_the_backtest_fills(
    simulated, tmp_path: Path, where: str
) -> None:
    data = make_bars(1500, seed=11)
    params = {"fast": 3, "slow": 8}
    expected = backtest(SmaCross, data, M1, params=params, history=100)
    marker = tmp_path / "stalled"
    system = simulated({"EUR_USD": data}, 100_000)
    system.add_brain("sma", base=Stalls, marker=str(marker), where=where, **params)
    system["sma"].subscribe(M1, 100)
    killed: list[int] = []

    def progress(info: dict) -> None:
        if not killed and marker.exists():
            pid = int(marker.read_text() or 0)
            if pid:
                os.kill(pid, signal.SIGKILL)
                wait_for(lambda: not pid_alive(pid), what="the Brain's death")
                killed.append(pid)

    result = system.run(timeout=180, progress=progress, every=0.0)
    assert killed and system.overmind.restarts.get("sma", 0) >= 1, system.overmind.restarts
    stats = system["sma"].osm_stats()
    assert _fills(result.trades) == _fills(expected.trades), (stats, where)
    np.testing.assert_allclose(result.equity.to_numpy(), expected.equity.to_numpy(), atol=1e-6)
    assert stats["missed"] == 0 and stats["errors"] == 0, stats
    progress_info = system._agents["router"].proxy.progress()
    if where == "order":  # the run was taken back: its order never left the dead Brain
        assert progress_info["rewound"] >= 1, progress_info

"""Everything visible: every restart, failed restart, dead agent and incident an agent reports is
recorded (``incidents()``), logged (Python logging and the Logger agent) and shown in
``status()``; a dead agent that cannot be restarted makes the owner's next call raise
:class:`AgentDiedError` naming it, not a Pyro connection error."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import pytest
from arch_brains import Recorder
from conftest import pid_alive, wait_for

import osmarkets
from osmarkets.architecture import AgentDiedError, Architecture, _visible
from osmarkets.incidents import Incidents

M1 = ("EUR_USD", 1, "Minutes")


def _kill(system: Architecture, name: str) -> int:
    pid = system._agents[name].process.pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), what=f"the {name}'s death")
    return pid


def _of(system: Architecture, agent: str, kind: str) -> list[dict[str, Any]]:
    return [i for i in system.incidents() if i["agent"] == agent and i["kind"] == kind]


def _checks(system: Architecture, count: int = 3) -> None:
    """Wait until the Overmind has run ``count`` more checks."""
    assert system.overmind is not None
    start = system.overmind._status_seq
    wait_for(lambda: system.overmind._status_seq >= start + count, what="Overmind checks")


def _logged(system: Architecture, text: str, level: str = "") -> bool:
    logger = system._agents["logger"].proxy  # system["logger"] raises once an agent is dead
    return any(text in line for line in logger.recent(level, 1000))


def test_a_restarted_brain_is_recorded_logged_and_shown(architectures, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="osmarkets")
    log_path = tmp_path / "agents.log"
    system = architectures(Architecture, logging=True, log_path=str(log_path))
    system.add_brain("victim", base=Recorder, buy_on=10**9)
    assert system.status().loc["victim", "restarts"] == 0
    assert system.status().loc["victim", "last_incident"] == ""
    old = _kill(system, "victim")
    wait_for(lambda: _of(system, "victim", "restart"), what="the restart incident")
    (incident,) = _of(system, "victim", "restart")
    new = system._agents["victim"].process.pid
    assert new != old
    assert f"pid {old} -> {new} in " in incident["detail"]
    assert "exit code -9" in incident["detail"]
    assert set(incident) == {"time", "agent", "kind", "detail"}
    # through the Logger, like an agent's line: in its memory and in its file
    line = f"victim: restart: pid {old} -> {new}"
    wait_for(lambda: _logged(system, line, "INFO"), what="the Logger's line")
    assert any("(overmind): " + line in entry for entry in system["logger"].recent("INFO", 1000))
    wait_for(lambda: line in log_path.read_text(), what="the line in the log file")
    assert any(r.name == "osmarkets" and line in r.getMessage() for r in caplog.records)
    status = system.status()
    assert status.index.name == "name"
    assert status.loc["victim", "restarts"] >= 1
    assert "restart" in status.loc["victim", "last_incident"]
    assert str(new) in status.loc["victim", "last_incident"]
    assert status.loc["router", "last_incident"] == ""
    assert system.overmind.restarts["victim"] == 1
    system["victim"].subscribe(M1, 10)  # the owner's calls go on: nothing is dead for good


def test_a_dead_trader_raises_in_the_owner_naming_it(architectures, caplog) -> None:
    caplog.set_level(logging.INFO, logger="osmarkets")
    system = architectures(Architecture, logging=True)
    old = _kill(system, "trader")
    wait_for(lambda: _of(system, "trader", "dead"), what="the death's incident")
    with pytest.raises(AgentDiedError) as caught:
        system.add_brain("late", base=Recorder)
    error = caught.value
    assert type(error) is AgentDiedError and isinstance(error, RuntimeError)
    message = str(error)
    assert "\n" not in message
    assert f"the trader agent 'trader' died (pid {old}, exit code -9)" in message
    assert "cannot be restarted: start the architecture again" in message
    assert (error.agent, error.kind, error.pid, error.exitcode) == ("trader", "trader", old, -9)
    assert "late" not in system  # it failed before starting anything
    for call in (lambda: system["router"], lambda: system.stream(["EUR_USD"])):
        with pytest.raises(AgentDiedError, match="'trader'"):
            call()
    # status() reports instead of raising
    status = system.status()
    assert not status.loc["trader", "alive"] and status.loc["trader", "exitcode"] == -9
    assert "dead" in status.loc["trader", "last_incident"]
    assert status.loc["router", "alive"]
    _checks(system)
    (dead,) = _of(system, "trader", "dead")  # once per death, however often it is seen
    assert f"pid {old} died (exit code -9)" in dead["detail"]
    wait_for(lambda: _logged(system, "trader: dead: ", "WARNING"), what="the Logger's warning")
    warnings = [r for r in caplog.records if "trader: dead" in r.getMessage()]
    assert warnings and {(r.name, r.levelno) for r in warnings} == {("osmarkets", logging.WARNING)}
    assert osmarkets.AgentDiedError is AgentDiedError


def test_a_restart_the_overmind_did_not_do_is_recorded(architectures) -> None:
    system = architectures(Architecture)
    system.add_brain("victim", base=Recorder)
    _checks(system, 2)  # the Overmind knows its process
    old = system._agents["victim"].process.pid
    system._restart_brain("victim")  # as the owner's restart_trader would replace the Trader
    new = system._agents["victim"].process.pid
    wait_for(lambda: _of(system, "victim", "restart"), what="the restart's incident")
    _checks(system)
    (incident,) = _of(system, "victim", "restart")
    assert incident["detail"] == f"pid {old} -> {new} (not by the Overmind)"
    assert system.overmind.restarts.get("victim", 0) == 0


class _Poking(Architecture):
    @_visible
    def poke(self, name: str) -> Any:
        """Kill ``name`` and call it: the call fails on the way, after the check on entry."""
        os.kill(self._agents[name].process.pid, signal.SIGKILL)
        return self._agents[name].proxy.osm_stats()


def test_a_proxy_call_that_fails_because_the_agent_died_names_it(architectures) -> None:
    system = architectures(_Poking, supervise=False)
    with pytest.raises(AgentDiedError, match=r"the trader agent 'trader' died \(pid") as caught:
        system.poke("trader")
    assert caught.value.__cause__ is not None  # the Pyro error it replaces, kept as the cause
    assert not system.status().loc["trader", "alive"]  # without supervision too
    assert len(_of(system, "trader", "dead")) == 1


def test_a_failed_restart_is_recorded_and_final(architectures) -> None:
    system = architectures(Architecture, logging=True)
    system.add_brain("victim", base=Recorder)
    attempts: list[str] = []

    def broken(name: str) -> None:
        attempts.append(name)
        raise RuntimeError("no room for a new Brain\nsecond line")

    system._restart_brain = broken  # type: ignore[method-assign]  # the Overmind's thread calls it
    old = _kill(system, "victim")
    wait_for(lambda: _of(system, "victim", "restart_failed"), what="the failed restart")
    _checks(system)
    (failed,) = _of(system, "victim", "restart_failed")
    assert failed["detail"] == f"pid {old}: RuntimeError: no room for a new Brain second line"
    assert attempts == ["victim"]  # tried once, not at every check
    assert not _of(system, "victim", "restart")
    with pytest.raises(AgentDiedError) as caught:
        system["router"]
    message = str(caught.value)
    assert f"the brain agent 'victim' died (pid {old}, exit code -9)" in message
    assert "its restart raised RuntimeError: no room" in message and "\n" not in message
    status = system.status()
    assert not status.loc["victim", "alive"]
    assert "restart failed" in status.loc["victim", "problem"]
    assert "restart_failed" in status.loc["victim", "last_incident"]
    assert status.loc["victim", "restarts"] == 0
    wait_for(lambda: _logged(system, "victim: restart_failed: ", "WARNING"), what="the warning")


def test_a_simulation_whose_trader_died_raises_the_same_error(simulated) -> None:
    system = simulated(symbols=["EUR_USD"], bars=50, seed=4)
    system.add_brain("rec", base=Recorder)
    old = _kill(system, "trader")
    with pytest.raises(AgentDiedError, match=rf"'trader' died \(pid {old}, exit code -9\) .*"
                       "a simulation cannot resume without it"):  # fmt: skip
        system.run(timeout=60)
    with pytest.raises(AgentDiedError, match="'trader'"):
        system.progress()
    assert len(_of(system, "trader", "dead")) == 1


def test_incidents_agents_report_are_recorded_once(architectures) -> None:
    system = architectures(Architecture)
    overmind = system.overmind
    real = overmind.probe
    reported: list[Any] = []

    def probe(name: str) -> dict[str, Any]:  # the Trader's stats, as it will report them
        row = real(name)
        if name == "trader" and row.get("running"):
            row["incidents"] = list(reported)
        return row

    overmind.probe = probe  # type: ignore[method-assign]
    reported.append({"n": 1, "kind": "reconciliation", "detail": "EUR_USD: 100 -> 0"})
    wait_for(lambda: _of(system, "trader", "reconciliation"), what="the reported incident")
    reported.append({"n": 2, "kind": "no such kind", "detail": "dropped"})
    reported.append({"n": 3, "kind": "recovered_order", "detail": "order 7 filled"})
    wait_for(lambda: _of(system, "trader", "recovered_order"), what="the second one")
    _checks(system)
    assert [i["detail"] for i in system.incidents() if i["agent"] == "trader"] == [
        "EUR_USD: 100 -> 0", "order 7 filled",
    ]  # fmt: skip
    status = system.status()
    assert "recovered_order: order 7 filled" in status.loc["trader", "last_incident"]
    assert "incidents" not in status.columns  # read, not shown as a column of lists


def test_the_incident_record() -> None:
    log = Incidents(maxlen=3)
    with pytest.raises(ValueError, match="incident kind"):
        log.record("trader", "oops", "x")
    for n in range(5):
        log.record("trader", "reconciliation", f"line {n}")
    assert [i["detail"] for i in log.items()] == ["line 2", "line 3", "line 4"]  # bounded
    assert log.count("trader", "reconciliation") == 5  # counted beyond the memory
    assert log.dead("trader", "trader", 12, -9) and not log.dead("trader", "trader", 12, -9)
    assert log.dead("trader", "trader", 13, 1)  # another death of the same agent
    reports = [{"n": 1, "kind": "reconciliation", "detail": "a"}, {"n": 2, "kind": "dead"}]
    assert log.from_agent("trader", 12, reports) == 2
    assert log.from_agent("trader", 12, reports) == 0  # seen
    assert log.from_agent("trader", 14, reports[:1]) == 1  # a new process counts from 1 again
    assert log.from_agent("trader", 14, "garbage") == 0
    assert log.from_agent("trader", 14, [None, {"n": True}, {"n": "3"}]) == 0
    assert "reconciliation: a" in log.last_text("trader") and log.last_text("router") == ""

"""The proxy through which the owner (and the Overmind, the GUI, the optimiser) call agents.

osBrain's own proxy writes the full Pyro traceback of every failed call on stdout before it
raises: a dead agent, asked by the launcher or by the Overmind's health checks, filled the
terminal with hundreds of lines. Here a failed call raises only, and a call to an agent that
died, whose connection broke or that does not answer in time raises
:class:`AgentUnreachableError`, whose one-line message names the agent.
"""

from __future__ import annotations

from typing import Any

import osbrain
import Pyro4.errors

#: Seconds a call through a proxy the architecture hands out may take before it raises
#: (osBrain's default waits forever: a stopped agent would hang the launcher with it).
CALL_TIMEOUT = 60.0


class AgentUnreachableError(Pyro4.errors.CommunicationError):
    """A call to agent ``agent`` failed because its process died, its connection broke, its
    name left the name server or it did not answer within the proxy's timeout. A Pyro
    ``CommunicationError``, so code that catches those keeps working."""

    def __init__(self, message: str, agent: str = "") -> None:
        super().__init__(message)
        self.agent = agent

    def __reduce__(self) -> Any:
        return type(self), (str(self), self.agent)


class AgentProxy(osbrain.Proxy):
    """An osBrain proxy to agent ``name`` that raises without printing, and whose calls time
    out after ``call_timeout`` seconds (None: wait forever)."""

    def __init__(
        self, name: str, nsaddr: Any, timeout: float = 3.0, call_timeout: float | None = None
    ) -> None:
        super().__init__(name, nsaddr, timeout=timeout)
        self._pyroTimeout = call_timeout

    def __getattr__(self, name: str) -> Any:
        # osBrain's lookup reads ``_pyroAttrs``; on a proxy whose __init__ was interrupted
        # (Ctrl-C) that attribute is missing and the lookup recursed without end in __del__.
        if name == "_pyroAttrs":
            raise AttributeError(name)
        return super().__getattr__(name)

    @property
    def agent_name(self) -> str:
        return str(getattr(self._pyroUri, "object", "") or "?")

    def _pyroInvoke(  # noqa: N802 (Pyro's name)
        self, methodname: str, args: Any, kwargs: Any, flags: int = 0, objectId: Any = None
    ) -> Any:
        try:
            result = self._remote_call(methodname, args, kwargs, flags, objectId)
        except Pyro4.errors.TimeoutError as exc:
            name = self.agent_name
            raise AgentUnreachableError(
                f"agent {name!r} did not answer {methodname}() within {self._pyroTimeout:g} s "
                f"(its loop is busy or stopped): {exc}", name,
            ) from exc  # fmt: skip
        except AgentUnreachableError:
            raise
        except (Pyro4.errors.CommunicationError, Pyro4.errors.NamingError) as exc:
            name = self.agent_name
            raise AgentUnreachableError(
                f"agent {name!r} is unreachable: {methodname}() failed with "
                f"{type(exc).__name__}: {exc}", name,
            ) from exc  # fmt: skip
        finally:
            self._safe = self._default_safe
            self._next_oneway = False
        self._post_invoke(methodname, args, kwargs)
        return result

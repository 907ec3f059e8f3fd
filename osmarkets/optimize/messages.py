"""The optimiser's data plane: the schema of every message between its agents.

Configurations, job requests, done messages and result rows are MessagePack, decoded by
:class:`osmarkets.wire.Decoder` into the types declared here (one schema per socket); decoding
*is* validation, and anything else is dropped, logged and counted by the receiving agent
(``osm_bad``), which keeps running. No message on these sockets is ever unpickled.

The one exception is the *job spec* (:class:`JobSpec`): the user's Brain class and the data,
which must travel as code to a Backtester that cannot import the class by name. It is a
cloudpickle inside a MessagePack ``bytes`` field, sent only by the Generator in reply to a job
request on its REQ/REP ``job`` socket, a CURVE server that admits only peers holding the
optimisation's secret key; the Backtester, a CURVE client, checks the server's key in turn, so
it unpickles only what the optimisation it was given the keys of sent.

::

    Generator --configs (PUSH)-->  Backtester      ('batch', job, number, [config, ...])
    Backtester --job (REQ)------>  Generator       ('job_request', job, worker)
    Generator  --job (REP)------>  Backtester      ('job', job, spec | None)
    Backtester --results (PUSH)->  Collector       ('rows', job, number, [row, ...], elapsed)
                                                   ('error', job, number, worker, traceback)
    Collector  --done (PUSH)---->  Generator       ('done', job, number, elapsed)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import msgspec
import numpy as np

from .. import wire
from ..wire import Message, WireError

Count = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(ge=0.0)]
#: The values a configuration may hold on the wire (a ``Choice`` of other objects runs only
#: in-process).
ConfigValue = bool | int | float | str | None
ConfigMsg = dict[str, ConfigValue]
PLAIN = (bool, int, float, str, type(None), np.bool_, np.integer, np.floating, np.str_)


class Row(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """One evaluated configuration (see :meth:`osmarkets.optimize.evaluate.Evaluator.evaluate`)."""

    id: str
    params: ConfigMsg
    stats: dict[str, float]
    score: float
    reason: str
    worker: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "params": self.params, "stats": self.stats,
                "score": self.score, "reason": self.reason, "worker": self.worker}  # fmt: skip


class Batch(Message, tag="batch"):
    job: Count
    number: Count
    configs: list[ConfigMsg]


class JobRequest(Message, tag="job_request"):
    job: Count
    worker: str


class JobSpec(Message, tag="job"):
    job: int
    spec: bytes | None  # the Evaluator's spec, cloudpickled; None: no such job


class Rows(Message, tag="rows"):
    job: Count
    number: Count
    rows: list[Row]
    elapsed: Seconds


class BatchError(Message, tag="error"):
    job: Count
    number: Count
    worker: str
    text: str


class Done(Message, tag="done"):
    job: Count
    number: Count
    elapsed: Seconds


#: What each socket accepts.
BACKTESTER_CONFIGS = Batch
GENERATOR_JOB = JobRequest
GENERATOR_DONE = Done
COLLECTOR_RESULTS = Rows | BatchError


def encode_batch(job: int, number: int, configs: Sequence[Mapping[str, Any]]) -> bytes:
    return wire.encode(("batch", job, number, [dict(c) for c in configs]))


def encode_rows(job: int, number: int, rows: Sequence[Mapping[str, Any]], elapsed: float) -> bytes:
    values = [(r["id"], r["params"], r["stats"], r["score"], r["reason"], r["worker"])
              for r in rows]  # fmt: skip
    return wire.encode(("rows", job, number, values, max(0.0, float(elapsed))))


def check_configs(configs: Sequence[Mapping[str, Any]]) -> None:
    """Raise ValueError unless every configuration can travel to a Backtester agent (string
    names; numbers, strings, booleans or None as values)."""
    for config in configs:
        for name, value in config.items():
            if not isinstance(name, str) or not isinstance(value, PLAIN):
                raise ValueError(
                    f"configuration {dict(config)!r}: {name!r} = {value!r} cannot travel to a "
                    "Backtester agent (numbers, strings, booleans or None only; use workers=0)"
                )


class JobSpecDecoder:
    """Decode the Generator's reply to a job request into ``(job, spec bytes | None)``.

    No size limit here (unlike :class:`osmarkets.wire.Decoder`): the spec carries the whole
    data set, and it comes only from the CURVE-authenticated Generator."""

    def __init__(self) -> None:
        self._decoder = msgspec.msgpack.Decoder(JobSpec)

    def __call__(self, data: bytes | memoryview) -> tuple[int, bytes | None]:
        try:
            reply = self._decoder.decode(data)
        except (msgspec.MsgspecError, RecursionError, MemoryError, TypeError) as exc:
            raise WireError(f"{type(exc).__name__}: {exc}"[:300]) from None
        return reply.job, reply.spec


__all__ = [
    "BACKTESTER_CONFIGS", "COLLECTOR_RESULTS", "GENERATOR_DONE", "GENERATOR_JOB", "Batch",
    "BatchError", "ConfigValue", "Done", "JobRequest", "JobSpec", "JobSpecDecoder", "Row",
    "Rows", "check_configs", "encode_batch", "encode_rows",
]  # fmt: skip

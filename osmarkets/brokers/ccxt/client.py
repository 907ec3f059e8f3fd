"""ccxt exchange objects from token-free settings (no osBrain here).

The API key and secret reach agent processes as files readable only by the user, written by the
architecture in its private directory, never as agent attributes or environment variables
(an osBrain proxy can read any attribute; a child process inherits the environment). This
module reads them back and builds the ccxt exchange; ``enableRateLimit`` is always on, so
ccxt spaces its requests by the exchange's published limits.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from ...secrecy import disable_core_dumps

KEY_ENV = "CCXT_API_KEY"
#: ccxt's credential fields: never accepted in ``options`` (they would reach agent
#: configurations, which a proxy can read); the key and secret travel in files
CREDENTIAL_FIELDS = ("apiKey", "secret", "uid", "login", "password", "twofa", "privateKey",
                     "walletAddress", "token")  # fmt: skip
SECRET_ENV = "CCXT_SECRET"
_KEY_FILE = "ccxt-api-key"
_SECRET_FILE = "ccxt-secret"


def write_secret_files(directory: str | os.PathLike[str], api_key: str, secret: str) -> dict:
    """Write the key and secret to new 0600 files in ``directory``; their paths, as settings."""
    from ..live import write_secret_file

    return {
        "key_file": write_secret_file(directory, _KEY_FILE, api_key),
        "secret_file": write_secret_file(directory, _SECRET_FILE, secret),
    }


def _read(path: str | None, env: str) -> str | None:
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip() or None
        except OSError as exc:
            raise ValueError(f"cannot read the exchange credentials ({exc.strerror})") from None
    return os.environ.get(env) or None


def exchange_from_settings(settings: Mapping[str, Any], *, pro: bool = False) -> Any:
    """A ccxt exchange (``ccxt.pro`` for websockets) from ``settings``: ``exchange`` (ccxt id),
    ``key_file`` / ``secret_file`` (else ``CCXT_API_KEY`` / ``CCXT_SECRET``), ``sandbox``
    (the exchange's testnet), ``options`` (ccxt constructor arguments: ``urls``, ``options``,
    ``timeout``...)."""
    import ccxt
    import ccxt.pro

    disable_core_dumps()  # this process holds the secret from now on
    name = settings.get("exchange")
    module = ccxt.pro if pro else ccxt
    if not isinstance(name, str) or name not in getattr(module, "exchanges", ()):
        raise ValueError(f"exchange: unknown ccxt exchange {name!r}")
    config: dict[str, Any] = dict(settings.get("options") or {})
    config["enableRateLimit"] = True
    key = _read(settings.get("key_file"), KEY_ENV)
    secret = _read(settings.get("secret_file"), SECRET_ENV)
    config["verbose"] = False  # verbose ccxt prints every request's headers (the API key)
    if key:
        config["apiKey"] = key
    if secret:
        config["secret"] = secret
    exchange = getattr(module, name)(config)
    if settings.get("sandbox"):
        exchange.set_sandbox_mode(True)
    if key or secret:  # ccxt logs every request's headers (the API key) at DEBUG
        exchange.logger = _Redacting(exchange.logger, [s for s in (key, secret) if s])
    return exchange


class _Redacting(logging.LoggerAdapter):
    """ccxt's logger with the credentials taken out of every message it logs."""

    def __init__(self, logger: Any, secrets: list[str]) -> None:
        super().__init__(logger, {})
        self._secrets = secrets

    def __repr__(self) -> str:
        return f"<redacting {self.logger!r}>"

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = " ".join(map(str, (msg, *args)))
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        self.logger.log(level, "%s", text, **kwargs)


def describe(exchange: Any) -> str:
    """An exchange for logs and reprs: its id, never its credentials."""
    return f"{exchange.id}"

"""``osmarkets sandbox`` and ``osmarkets download``: bad input exits 2 with one line."""

import threading

import pandas as pd
import pytest
from oanda_support import TOKEN, wait_for

from osmarkets.cli import build_parser, main
from osmarkets.commands import sandbox as sandbox_command


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def one_line_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "argv, field",
    [
        (["--port", "70000"], "--port"),
        (["--stream-port", "-1"], "--stream-port"),
        (["--instruments", "EUR_USD,NOPE_XXX"], "NOPE_XXX"),
        (["--heartbeat", "0"], "--heartbeat"),
        (["--token", " "], "--token"),
    ],
)
def test_sandbox_bad_inputs(capsys, argv, field):
    assert field in one_line_error(capsys, ["sandbox", "--port", "0", *argv])


def test_sandbox_port_in_use(capsys, sandbox):
    port = sandbox.rest_url.rsplit(":", 1)[1]
    assert "cannot listen" in one_line_error(capsys, ["sandbox", "--port", port])


def test_sandbox_serves_until_interrupted(capsys):
    args = build_parser().parse_args(["sandbox", "--port", "0", "--token", TOKEN, "--seed", "3"])
    ready, stop = threading.Event(), threading.Event()
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(code=sandbox_command.run(args, ready=ready, stop=stop)),
        daemon=True,
    )
    thread.start()
    wait_for(ready.is_set)
    out = capsys.readouterr().out
    assert "rest_url" in out and "stream_url" in out and TOKEN in out
    stop.set()  # what Ctrl-C does to the wait in the main thread
    thread.join(5)
    assert not thread.is_alive() and result["code"] == 0


@pytest.mark.parametrize(
    "argv, field",
    [
        (["EUR_USD", "M3", "--from", "2024-01-01", "-o", "x.csv"], "granularity"),
        (["EUR_USD", "M1", "--from", "someday", "-o", "x.csv"], "--from"),
        (["EUR_USD", "M1", "--from", "2024-01-02", "--to", "2024-01-01", "-o", "x.csv"], "--to"),
        (["EUR_USD", "M1", "--from", "2024-01-01", "-o", "x.xlsx"], "-o"),
        (["EUR_USD", "M1", "--from", "2024-01-01", "-o", "/no/such/dir/x.csv"], "directory"),
        (["EUR_USD", "M1", "--from", "2024-01-01", "-o", "x.csv", "--price", "Z"], "--price"),
        (
            ["EUR_USD", "M1", "--from", "2024-01-01", "-o", "x.csv", "--token-file", "/no/file"],
            "--token-file",
        ),
    ],
)
def test_download_bad_inputs(capsys, monkeypatch, tmp_path, argv, field):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OANDA_ACCESS_TOKEN", TOKEN)
    assert field in one_line_error(capsys, ["download", *argv])


def test_download_needs_a_token(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("OANDA_ACCESS_TOKEN", raising=False)
    err = one_line_error(
        capsys,
        ["download", "EUR_USD", "M1", "--from", "2024-01-01", "-o", str(tmp_path / "x.csv")],
    )
    assert "OANDA_ACCESS_TOKEN" in err


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_download_from_sandbox(capsys, sandbox, token_file, tmp_path, suffix):
    out = tmp_path / f"bars{suffix}"
    code = main(
        [
            "download",
            "EUR_USD",
            "M5",
            "--from",
            "2024-02-05",
            "--to",
            "2024-02-26",
            "-o",
            str(out),
            "--rest-url",
            sandbox.rest_url,
            "--token-file",
            str(token_file),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "100%" in err and "written" in err
    frame = (
        pd.read_parquet(out)
        if suffix == ".parquet"
        else pd.read_csv(out, index_col="time", parse_dates=True)
    )
    assert len(frame) > 4000 and "bid_close" in frame.columns
    assert frame.index.min() >= pd.Timestamp("2024-02-05", tz="UTC")


def test_download_wrong_token_is_one_line(capsys, sandbox, tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("wrong")
    code = main(
        [
            "download",
            "EUR_USD",
            "M5",
            "--from",
            "2024-02-05",
            "--to",
            "2024-02-06",
            "-o",
            str(tmp_path / "x.csv"),
            "--rest-url",
            sandbox.rest_url,
            "--token-file",
            str(bad),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "401" in err[-1]


# -- osmarkets sandbox --exchange binance ------------------------------------------------------
@pytest.mark.parametrize(
    "argv, field",
    [
        (["--symbols", "BTC/USDT,DOGE/EUR"], "DOGE/EUR"),
        (["--token", "x"], "--token"),
        (["--instruments", "EUR_USD"], "--instruments"),
        (["--secret-file", "/no/such/file"], "--secret-file"),
        (["--api-key", "not a key"], "--api-key"),
    ],
)
def test_exchange_sandbox_bad_inputs(capsys, argv, field):
    pytest.importorskip("ccxt")
    assert field in one_line_error(capsys, ["sandbox", "--exchange", "binance", "--port", "0",
                                            *argv])  # fmt: skip


def test_exchange_sandbox_port_in_use(capsys, sandbox):
    pytest.importorskip("ccxt")
    port = sandbox.rest_url.rsplit(":", 1)[1]
    err = one_line_error(capsys, ["sandbox", "--exchange", "binance", "--port", port])
    assert "cannot listen" in err


def test_binance_options_need_the_exchange(capsys):
    assert "--symbols" in one_line_error(capsys, ["sandbox", "--port", "0", "--symbols", "X"])


def test_exchange_sandbox_serves_until_interrupted(capsys, tmp_path):
    ccxt = pytest.importorskip("ccxt")
    secret = tmp_path / "secret"
    secret.write_text("s3cret-for-tests\n")
    argv = ["sandbox", "--exchange", "binance", "--port", "0", "--symbols", "ETH/USDT",
            "--seed", "4", "--api-key", "k3y"]  # fmt: skip
    for extra, shows_secret in (([], True), (["--secret-file", str(secret)], False)):
        args = build_parser().parse_args(argv + extra)
        ready, stop = threading.Event(), threading.Event()
        result = {}
        thread = threading.Thread(
            target=lambda a=args, r=ready, s=stop, out=result: out.update(
                code=sandbox_command.run(a, ready=r, stop=s)
            ),
            daemon=True,
        )
        thread.start()
        wait_for(ready.is_set)
        out = capsys.readouterr().out
        url = next(line.split("= ")[1].split()[0] for line in out.splitlines() if "url " in line)
        assert "k3y" in out and "ws_url" in out
        assert ("test credential" in out) is shows_secret
        assert "s3cret-for-tests" not in out
        if shows_secret:
            secret_value = next(
                line.split("= ")[1].split()[0] for line in out.splitlines() if "secret" in line
            )
        else:
            secret_value = "s3cret-for-tests"
            assert str(secret) in out
        exchange = ccxt.binance(
            {
                "apiKey": "k3y",
                "secret": secret_value,
                "urls": {"api": {"public": url + "/api/v3", "private": url + "/api/v3"}},
                "options": {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False,
                            "fetchCurrencies": False},
            }
        )  # fmt: skip
        assert list(exchange.load_markets()) == ["ETH/USDT"]
        assert exchange.fetch_balance()["USDT"]["free"] == 10_000
        stop.set()
        thread.join(5)
        assert not thread.is_alive() and result["code"] == 0

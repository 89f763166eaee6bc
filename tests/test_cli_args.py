"""Command-line flags the commands cannot use are refused at parse time with exit 2 and one line
naming the flag; an unreachable broker is one line, not a traceback."""

from __future__ import annotations

import argparse
import socket

import pytest

from inference.cli_types import non_negative_float, non_negative_int, port, positive_int
from streams.cli import main


def test_the_types_accept_their_range_and_nothing_else():
    assert non_negative_int("0") == 0 and positive_int("3") == 3 and port("65535") == 65535
    assert non_negative_float("0") == 0.0 and non_negative_float("2.5") == 2.5
    for parse, text in (
        (non_negative_int, "-1"),
        (non_negative_int, "1.5"),
        (positive_int, "0"),
        (port, "0"),
        (port, "65536"),
        (non_negative_float, "-0.1"),
        (non_negative_float, "nan"),
        (non_negative_float, "inf"),
        (non_negative_float, "fast"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            parse(text)


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["simulate", "--preset", "tiny", "--seed", "-1", "--out", "x"], "--seed"),  # numpy traceback before
        (["api", "--port", "99999"], "--port"),  # OverflowError from bind() before
        (["produce", "--preset", "tiny", "--rate", "-5"], "--rate"),
        (["produce", "--preset", "tiny", "--partitions", "0"], "--partitions"),
        (["train", "--data", "d", "--out", "o", "--max-day", "0"], "--max-day"),  # trained on NaN before
        (["train", "--data", "d", "--out", "o", "--epochs", "0"], "--epochs"),
        (["evaluate", "--data", "d", "--out", "o", "--threads", "0"], "--threads"),
        (["fit-fei", "--dataset", "d", "--out", "o", "--seed", "-2"], "--seed"),
        (["run", "--seed", "-1"], "--seed"),
    ],
)
def test_flags_out_of_range_are_refused_at_parse_time(argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {flag}: expected" in err and "Traceback" not in err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", ["produce", "repartition"])
def test_no_broker_is_one_line(command, tmp_path, capsys):
    bootstrap = f"127.0.0.1:{_closed_port()}"
    argv = ["--bootstrap", bootstrap]
    if command == "produce":
        events = tmp_path / "e.jsonl"
        events.write_text("{}\n")
        argv += ["--events", str(events)]
    else:
        argv += ["--to-prefix", "next.", "--partitions", "4"]
    assert main([command, *argv]) == 2
    err = capsys.readouterr().err
    assert f"no Kafka broker answers at {bootstrap}" in err and "Traceback" not in err


def test_produce_refuses_a_missing_event_file_before_connecting(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(
            [
                "produce",
                "--events",
                str(tmp_path / "none.jsonl"),
                "--bootstrap",
                f"127.0.0.1:{_closed_port()}",
            ]
        )
    assert e.value.code == 2 and "none.jsonl: no such file" in capsys.readouterr().err


def test_run_refuses_missing_inputs_and_bad_settings_in_one_line(tmp_path, capsys, monkeypatch):
    """liftstream run: a missing --events file or --dataset folder, or a LIFTSTREAM_ variable out of
    range, is one line with exit 2 (a FileNotFoundError / ValidationError traceback before)."""
    with pytest.raises(SystemExit) as e:
        main(["run", "--events", str(tmp_path / "none.jsonl")])
    assert e.value.code == 2 and "no such file" in capsys.readouterr().err
    assert main(["run", "--dataset", str(tmp_path)]) == 2
    assert "meta.json: missing" in capsys.readouterr().err
    monkeypatch.setenv("LIFTSTREAM_VALUE_PER_IMPRESSION", "-1")
    monkeypatch.setenv("LIFTSTREAM_ALERT_WINDOW", "0")
    assert main(["run", "--preset", "tiny", "--forecaster", "standin", "--advisor", "standin"]) == 2
    err = capsys.readouterr().err
    assert (
        "invalid configuration: LIFTSTREAM_VALUE_PER_IMPRESSION" in err and "LIFTSTREAM_ALERT_WINDOW" in err
    )
    assert "Traceback" not in err

"""The ``liftstream`` console script: one entry point, one module per subcommand.

Each subcommand lives beside the code it drives and exposes ``cli(argv: list[str]) -> int``
with its own argparse parser; this table only maps names to those functions, so adding a
command never touches another's code. ``liftstream <command> --help`` shows its options.
"""

from __future__ import annotations

import importlib
import sys

# name -> ("module:function", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "streams.embedded:cli",
        "replay a campaign in-process (embedded ClickHouse, in-process models) and write a report",
    ),
    "simulate": (
        "inference.sim.cli:cli",
        "generate a synthetic ISA world: dataset folder, event stream, ground truth",
    ),
    "train": (
        "inference.lamm_train:cli_train",
        "train LAMM (and its conformal intervals) on a dataset folder",
    ),
    "evaluate": (
        "inference.lamm_train:cli_evaluate",
        "5-fold CV of LAMM against its baselines, ablation, report",
    ),
    "fit-fei": (
        "inference.fei_train:cli_fit",
        "fit the FEI advisor (content encoder + control-function IV or Deep IV) on a dataset folder",
    ),
    "advise": (
        "inference.fei_train:cli_advise",
        "influencer-size advice for videos of a dataset from a fitted FEI model",
    ),
    "export-triton": (
        "inference.export:cli",
        "write the Triton model repository (triton_models/) from trained models",
    ),
    "worker": (
        "streams.app:cli_worker",
        "run a Faust worker: Kafka events in, forecasts/alerts/advice to ClickHouse",
    ),
    "produce": (
        "streams.produce:cli",
        "replay an event file or a simulated world into Kafka at a given rate",
    ),
    "repartition": (
        "streams.produce:cli_repartition",
        "copy the input topic into a new one with more partitions (keys kept), to scale past them",
    ),
    "stack": (
        "streams.stack:cli",
        "start/stop the local real services (Tansu broker, ClickHouse server, tritonserver)",
    ),
    "api": ("streams.api:cli", "serve forecasts, alerts and advice over HTTP from ClickHouse"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: liftstream <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "liftstream <command> --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"liftstream: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target, _ = COMMANDS[name]
    module, func = target.split(":")
    from inference.model_dir import ModelDirError
    from schemas.dataset import DatasetError
    from streams.settings import SettingsError

    try:
        return int(getattr(importlib.import_module(module), func)(rest) or 0)
    except (DatasetError, ModelDirError, SettingsError) as e:  # bad data / model folder / setting: one line
        print(f"liftstream {name}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

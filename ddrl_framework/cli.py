"""``ddrl``: train, pretrain, compare, report, doctor, plugins, new-plugin. User errors exit with code 2
and a short message, found before any work (``running.validation``); a run stopped by a failing
component exits with code 3.

Heavy modules are imported inside the commands, so that ``ddrl --help`` and an error in a
config file answer at once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ddrl_framework.errors import TrainingError, UserError
from ddrl_framework.roles import ROLES

if TYPE_CHECKING:
    from ddrl_framework.registry import Registry
    from ddrl_framework.running.config import ResolvedExperiment

EXIT_USER_ERROR = 2
EXIT_TRAINING_STOPPED = 3


def _experiment_arguments(parser: argparse.ArgumentParser) -> None:
    """CONFIG, ``--set`` and ``--arm/--beta``: what train, pretrain and doctor load (:func:`_load`)."""
    parser.add_argument("config", help="experiment TOML file (a [compare] table in it is ignored "
                        "unless --arm names one of its arms)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.iterations=5 (repeatable)")
    parser.add_argument("--arm", metavar="NAME", help="the experiment of this [[compare.arms]] arm, "
                        "exactly as `ddrl compare` runs it (same run folder), with the file's seed")
    parser.add_argument("--beta", type=float, metavar="B", help="the arm's beta (needed when it "
                        "sweeps several; any value is a new point); without --arm: regularizer.beta")


def _prepare(args: argparse.Namespace, *, writes_output: bool,
             resume: bool = False) -> tuple[ResolvedExperiment, Registry]:
    """The experiment of CONFIG, ``--set``, ``--arm/--beta``, checked whole before any work (the
    file is structured before any plugin loads, so a typo is reported at once)."""
    from ddrl_framework.registry import load_registry
    from ddrl_framework.running.loader import load_file
    from ddrl_framework.running.validation import validate_experiment

    file = load_file(args.config, args.overrides)
    if args.arm is not None:
        file.arm(args.arm)  # a misspelled arm, too, is reported before the plugins load
    registry = load_registry()
    experiment = file.experiment(args.arm, args.beta, registry)
    return validate_experiment(experiment, registry, file.source, writes_output=writes_output,
                               resume=resume), registry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddrl", description="RL post-training of diffusion models.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune a policy with RL (pretrains its reference first if needed)")
    _experiment_arguments(train)
    train.add_argument("--resume", action="store_true",
                       help="continue the run in its folder (output_dir, or the arm's run folder); "
                       "with no run there yet, start one (and say so)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    pretrain = commands.add_parser("pretrain", help="train the reference model on the data (cached)")
    _experiment_arguments(pretrain)
    pretrain.add_argument("--quiet", action="store_true")
    pretrain.add_argument("--fresh", action="store_true", help="pretrain into your cache even when the package "
                          "ships this reference (to reproduce it)")

    compare = commands.add_parser("compare", help="run every arm x beta x seed of a comparison, then the report")
    compare.add_argument("config", help="experiment TOML file with a [compare] table")
    compare.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a value of every arm, e.g. --set train.iterations=50")
    compare.add_argument("--only", metavar="RUN", help="run only this run (used for parallel runs)")
    compare.add_argument("--quiet", action="store_true")

    report = commands.add_parser("report", help="regenerate report.md and its plots from saved metrics")
    report.add_argument("run_dir", help="the comparison's output_dir")

    doctor = commands.add_parser("doctor", help="check a backbone + sampler pair (ratio, log-probs, "
                                 "scheduler match, ranges, data loss, gradients); exit 1 on a failure")
    _experiment_arguments(doctor)
    doctor.add_argument("--samples", type=int, default=4, help="rollout size (default 4)")
    doctor.add_argument("--quiet", action="store_true")

    _plugin_commands(commands)
    return parser


def _plugin_commands(commands: argparse._SubParsersAction) -> None:
    """``ddrl plugins`` and ``ddrl new-plugin``."""
    commands.add_parser("plugins", help="list every registered component with its plugin, and every plugin "
                        "that failed to load (exit 1 if one did)")
    new_plugin = commands.add_parser("new-plugin", help="write a ready plugin package: a component of ROLE, "
                                     "its hook, entry point, contract tests and README")
    new_plugin.add_argument("role", choices=list(ROLES), help="what the plugin registers")
    new_plugin.add_argument("name", help="the component's registry name, e.g. center-mass (the package is "
                            "ddrl-<name>, its module ddrl_<name>)")
    new_plugin.add_argument("--directory", metavar="DIR", help="the package folder itself, new or empty (default: ./ddrl-<name>)")
    new_plugin.add_argument("--diffusers", metavar="PIPELINE", help="policies: a backbone of this diffusers pipeline "
                            "class (e.g. PixArtSigmaPipeline), with the fidelity check and a tiny config")


def _train(args: argparse.Namespace) -> None:
    experiment, registry = _prepare(args, writes_output=True, resume=args.resume)
    from ddrl_framework.distributed.world import current_world
    from ddrl_framework.running.trainer import train
    from ddrl_framework.running.validation import resume_note

    from ddrl_framework.running.pretrain import untrained_note

    notes = [resume_note(experiment) if args.resume else None, untrained_note(experiment)]
    for note in notes:
        if note and current_world().is_main:
            print(f"ddrl train: {note}", file=sys.stderr)
    output = train(experiment, registry, resume=args.resume, show_progress=not args.quiet)
    if current_world().is_main:
        print(f"metrics: {output / 'metrics.jsonl'}\nsamples: {output / 'samples_final.png'}")


def _pretrain(args: argparse.Namespace) -> None:
    experiment, registry = _prepare(args, writes_output=False)
    from ddrl_framework.running.pretrain import ensure_pretrained

    print(ensure_pretrained(experiment, registry, show_progress=not args.quiet, fresh=args.fresh))


def _compare(args: argparse.Namespace) -> None:
    from ddrl_framework.running.loader import load_file

    load_file(args.config, args.overrides).runs()  # a typo is reported before torch and the plugins load
    from ddrl_framework.comparison.compare import run_compare, set_threads_from_env

    set_threads_from_env()
    path = run_compare(args.config, args.overrides, only=args.only, show_progress=not args.quiet)
    print(f"report: {path}" if args.only is None else f"run: {path}")


def _report(args: argparse.Namespace) -> None:
    from ddrl_framework.comparison.report import write_report

    print(f"report: {write_report(args.run_dir)}")


def _doctor(args: argparse.Namespace) -> int:
    experiment, registry = _prepare(args, writes_output=False)
    from ddrl_framework.running.components import build_components
    from ddrl_framework.running.device import resolve_device
    from ddrl_framework.running.doctor import format_table, make_probe, run_checks
    from ddrl_framework.running.pretrain import pretrain_if_needed

    device = resolve_device(experiment.train.device)
    pretrain_if_needed(experiment, registry, show_progress=not args.quiet)
    parts = build_components(experiment, registry, device, show_progress=not args.quiet)
    results = run_checks(make_probe(parts, args.samples, experiment.seed, device))
    print(format_table(results))
    failed = [r.name for r in results if r.status == "FAIL"]
    print(f"{len(failed)} check(s) failed: {', '.join(failed)}" if failed else "all checks passed")
    return 1 if failed else 0


def _plugins(_: argparse.Namespace) -> int:
    """Every component, then every broken plugin with its error and how to run without it, then
    the installed plugins the environment left out. Exit 1 if a plugin is broken."""
    from ddrl_framework.registry import load_registry

    registry = load_registry(strict=False)
    for role in ROLES.values():
        print(f"{role.plural}:")
        for entry in (e for e in registry.entries() if e.role == role.name):
            origin = str(entry.distribution) if entry.distribution else "(not installed)"
            print(f"  {entry.name:<26} plugin {entry.plugin:<20} {origin}")
    if registry.problems:
        print("\nbroken plugins (every other command refuses to run while one is loaded):")
        for problem in registry.problems:
            print(f"  {problem.plugin}: {problem.message}\n    {problem.advice(registry.plugins())}")
    if registry.skipped():
        print("\ninstalled, not loaded:")
        for name, dist, reason in registry.skipped():
            print(f"  {name:<26} {str(dist or ''):<28} {reason}")
    return 1 if registry.problems else 0


def _new_plugin(args: argparse.Namespace) -> None:
    from ddrl_framework.scaffold import write_plugin

    folder = write_plugin(args.role, args.name, args.directory, args.diffusers)
    print(f"wrote {folder}\nnext: pip install -e {folder} && pytest {folder}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {"train": _train, "pretrain": _pretrain, "compare": _compare, "report": _report,
               "doctor": _doctor, "plugins": _plugins, "new-plugin": _new_plugin}[args.command]
    try:
        code = handler(args)
    except UserError as error:
        print(f"ddrl {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except TrainingError as error:
        print(f"ddrl {args.command}: stopped: {error}", file=sys.stderr)
        return EXIT_TRAINING_STOPPED
    except KeyboardInterrupt:
        print(f"ddrl {args.command}: interrupted (checkpoints already written are kept)", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())

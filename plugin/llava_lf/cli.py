"""`llava-lf`: the plugin's command line. Each subcommand lives in the module that does its job."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# Subcommands that live beside the code they drive: each module exposes
# `add_subcommand(commands)` and is imported only to build the parser (its heavy imports stay lazy).
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "llava_lf.assembly.cli",
    "llava_lf.evaluation.cli",
    "llava_lf.generate.cli",
    "llava_lf.convert.cli",
    "llava_lf.training.cli",
)


def _repo_yaml_dir() -> Path:
    """yaml/ of a source checkout (the demo's recipes live there), else yaml/ under the working directory."""
    checkout = Path(__file__).resolve().parents[2] / "yaml"
    return checkout if checkout.is_dir() else Path.cwd() / "yaml"


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo.pipeline import DemoConfig, format_result, run_demo

    recipes = args.recipes or _repo_yaml_dir() / "demo"
    if not (recipes / "stage1_pretrain.yaml").is_file():
        print(f"llava-lf demo: no demo YAMLs in {recipes}; run from the repository or pass --recipes DIR",
              file=sys.stderr)
        return 2
    result = run_demo(DemoConfig(out=args.out, recipes=recipes, n_train=args.train_scenes,
                                 n_test=args.test_scenes, seed=args.seed))
    print(format_result(result))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    """Show whether the import hook registered our templates in this environment."""
    from ._hook import DISABLE_ENV, is_disabled
    from .registration import registered_names

    names = registered_names()
    print(f"import hook: {'disabled by ' + DISABLE_ENV if is_disabled() else 'enabled'}")
    print(f"templates registered with llamafactory: {', '.join(names) or 'none'}")
    return 0 if names else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llava-lf", description="The LLaVA recipe for LLaMA-Factory.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the embedded tiny-LLaVA pipeline end to end on CPU")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.add_argument("--recipes", type=Path, default=None, help="folder of the demo YAMLs (default: yaml/demo)")
    demo.add_argument("--train-scenes", type=int, default=2000)
    demo.add_argument("--test-scenes", type=int, default=60, help="held-out scenes, five questions each")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_cmd_demo)

    doctor = commands.add_parser("doctor", help="check that llamafactory-cli sees our templates")
    doctor.set_defaults(run=_cmd_doctor)

    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).add_subcommand(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.run(args))

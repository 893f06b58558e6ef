"""`llava-lf`: the plugin's command line. Each subcommand lives in the module that does its job.

`run` is the one place that turns errors into messages and exit codes (`llava_lf.errors`): a subcommand returns
an exit code or raises `LlavaLfError`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path

from .errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_NOT_REGISTERED, EXIT_OK, LlavaLfError

# Subcommands that live beside the code they drive: each module exposes
# `add_subcommand(commands)` and is imported only to build the parser (its heavy imports stay lazy).
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "llava_lf.assembly.cli",
    "llava_lf.evaluation.cli",
    "llava_lf.data.generate.cli",
    "llava_lf.data.convert.cli",
    "llava_lf.data.modality.cli",
    "llava_lf.chat",
    "llava_lf.data.inspect.cli",
)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo.pipeline import DemoConfig, DemoLayout, format_result, run_demo, write_data_step
    from .resources import demo_recipes_dir

    recipes = args.recipes or demo_recipes_dir()
    if not (recipes / "stage1_pretrain.yaml").is_file():
        raise LlavaLfError(f"--recipes {recipes}: no demo YAMLs there (stage1_pretrain.yaml, ...); pass the folder "
                           "that `llava-lf recipes copy DIR` writes as DIR/demo, or leave --recipes out")
    config = DemoConfig(out=args.out or Path("runs/demo_next" if args.next else "runs/demo"), recipes=recipes,
                        n_train=args.train_scenes, n_test=args.test_scenes, seed=args.seed, warm_lm=args.warm_lm)
    if args.next:
        from .demo.next_demo import format_next_result, next_demo_config, run_next_demo

        if args.data_only:
            config = next_demo_config(config)
        else:
            print(format_next_result(run_next_demo(config)))
            return EXIT_OK
    if args.data_only:
        layout = DemoLayout(config.out)
        write_data_step(config, layout)
        print(f"demo data in {layout.data}, datasets registered in {layout.datasets / 'dataset_info.json'}")
        return EXIT_OK
    print(format_result(run_demo(config)))
    return EXIT_OK


def _cmd_doctor(args: argparse.Namespace) -> int:
    """Show whether the import hook registered our templates in this environment."""
    from ._hook import DISABLE_ENV, is_disabled
    from .host.registration import registered_names

    names = registered_names()
    print(f"import hook: {'disabled by ' + DISABLE_ENV if is_disabled() else 'enabled'}")
    print(f"templates registered with llamafactory: {', '.join(names) or 'none'}")
    return EXIT_OK if names else EXIT_NOT_REGISTERED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llava-lf", description="The LLaVA recipe for LLaMA-Factory.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the embedded tiny-LLaVA pipeline end to end on CPU")
    demo.add_argument("--out", type=Path, default=None, help="default runs/demo (with --next: runs/demo_next)")
    demo.add_argument("--next", action="store_true",
                      help="LLaVA-NeXT (AnyRes) beside LLaVA-1.5 on pictures with small shapes, from one stage 1")
    demo.add_argument("--recipes", type=Path, default=None, help="folder of the demo YAMLs (default: yaml/demo)")
    demo.add_argument("--train-scenes", type=int, default=2000)
    demo.add_argument("--test-scenes", type=int, default=60, help="held-out scenes, five questions each")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--warm-lm", type=Path, default=None,
                      help="an earlier demo's models/llama_warm (same --train-scenes and --seed): skip the text warm-up")
    demo.add_argument("--data-only", action="store_true",
                      help="write the pictures and the converted datasets (the first step), then stop")
    demo.set_defaults(run=_cmd_demo)

    recipes = commands.add_parser("recipes", help="the shipped recipe YAMLs")
    recipes_commands = recipes.add_subparsers(dest="recipes_command", required=True)
    copy = recipes_commands.add_parser("copy", help="copy the shipped YAMLs (recipes, demo, presets) into DIR to edit")
    copy.add_argument("dir", type=Path)
    copy.add_argument("--overwrite", action="store_true", help="replace files that already exist in DIR")
    copy.set_defaults(run=_cmd_recipes_copy)

    doctor = commands.add_parser("doctor", help="check that llamafactory-cli sees our templates",
                                 description=f"Exit {EXIT_OK} when the host sees our templates, "
                                             f"{EXIT_NOT_REGISTERED} when it sees none.")
    doctor.set_defaults(run=_cmd_doctor)

    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).add_subcommand(commands)
    return parser


def _cmd_recipes_copy(args: argparse.Namespace) -> int:
    from .resources import copy_recipes

    written = copy_recipes(args.dir, overwrite=args.overwrite)
    print(f"wrote {len(written)} recipe files to {args.dir}; edit them and run e.g. "
          f"llamafactory-cli train {args.dir / 'llava1_5_lora_sft.yaml'}")
    return EXIT_OK


def run(argv: list[str] | None = None) -> int:
    """Parse and run one command; an expected failure becomes one line per problem and exit 2."""
    args = build_parser().parse_args(argv)
    name = f"llava-lf {args.command}"
    try:
        return args.run(args)
    except LlavaLfError as error:
        for problem in error.problems:
            _say(name, problem)
        return EXIT_BAD_INPUT
    except OSError as error:  # a file the user named cannot be read or written: their environment, not our bug
        _say(name, str(error))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _say(name, "interrupted")
        return EXIT_INTERRUPTED
    except Exception:  # a bug: show it whole, with a code of its own
        traceback.print_exc()
        _say(name, "internal error (a bug, not your input); please report the traceback above")
        return EXIT_INTERNAL


def _say(name: str, text: str) -> None:
    # a lone surrogate from the user's data (valid in JSON, not in UTF-8) is written as an escape
    print(f"{name}: {text}".encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))

# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv (Python >= 3.11) when missing and installs the project with its extras.
#
# `make test` is the host matrix: the whole suite on the release host (.venv: llamafactory from the package index),
# then the host-facing tests (marker `host`) on the host's main branch (.venv-main: the host's main installed first,
# then the project, which must keep that host and its transformers). The host's main comes from a wheel when one is
# given (HOST_MAIN_WHEEL=<file> or HOST_MAIN_DIR=<folder>) or lies in ../shared/hosts, else from the public
# repository at a fixed commit (HOST_MAIN_GIT, pip's git URL form; needs git and the git host). `make host-main`
# prints which one a run would use.
# Everyday loop: `make test-fast` (tests not marked `slow`, i.e. none over ~5 s; release host; 1.5 min on 2 cores),
# `make test-main` (host-facing tests on main). `make test` also makes transformers-4.57 (the hub test's folder).

SHELL := bash
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The host's main branch: a wheel (built with `pip wheel --no-deps`, for machines that reach no git host; see
# ../shared/hosts/README.md) or the public repository at the commit that wheel was built from.
HOST_MAIN_DIR ?= ../shared/hosts
HOST_MAIN_WHEEL ?= $(lastword $(sort $(wildcard $(HOST_MAIN_DIR)/llamafactory-*.whl)))
HOST_MAIN_COMMIT ?= ff6d4d12eeb035d6ce06805a5733dd7b29f2ac30
HOST_MAIN_GIT ?= git+https://github.com/hiyouga/LLaMA-Factory@$(HOST_MAIN_COMMIT)
# Which one: a wheel named on the command line (or in the environment); else a git URL named there; else the wheel
# found in HOST_MAIN_DIR; else the git URL.
given = $(filter command environment,$(firstword $(origin $(1))))
ifneq ($(call given,HOST_MAIN_WHEEL)$(call given,HOST_MAIN_DIR),)
HOST_MAIN := $(HOST_MAIN_WHEEL)
else ifneq ($(call given,HOST_MAIN_GIT),)
HOST_MAIN := $(HOST_MAIN_GIT)
else
HOST_MAIN := $(or $(HOST_MAIN_WHEEL),$(HOST_MAIN_GIT))
endif
HOST_MAIN_IS_GIT := $(filter git+%,$(HOST_MAIN))
# What the venv was made from: a wheel's absolute path, or the git URL.
HOST_MAIN_ID := $(if $(HOST_MAIN_IS_GIT),$(HOST_MAIN),$(abspath $(HOST_MAIN)))
HOST_MAIN_WAYS := give a wheel (HOST_MAIN_WHEEL=<file> or HOST_MAIN_DIR=<folder>; ../shared/hosts/README.md) or a \
	reachable git URL (HOST_MAIN_GIT=git+https://github.com/hiyouga/LLaMA-Factory@<commit>)
# One line when the chosen source cannot be had, never a silently skipped half of the matrix. A git URL is checked by
# listing the repository (the URL without `git+` and without its last `@<commit>`).
NEED_HOST_MAIN := $(if $(HOST_MAIN_IS_GIT), \
	url='$(patsubst git+%,%,$(HOST_MAIN))'; url="$${url%@*}"; \
	GIT_TERMINAL_PROMPT=0 timeout 60 git ls-remote -q "$$url" >/dev/null 2>&1 || { echo "No host main: cannot reach" \
	"$(HOST_MAIN) (git ls-remote); $(HOST_MAIN_WAYS)."; exit 1; }, \
	test -n "$(HOST_MAIN)" && test -f "$(HOST_MAIN)" || { echo "No host main: no llamafactory-*.whl at" \
	"$(or $(HOST_MAIN),$(HOST_MAIN_DIR)); $(HOST_MAIN_WAYS)."; exit 1; })
MAIN_VENV := .venv-main
MAIN_BIN := $(MAIN_VENV)/bin
MAIN_STAMP := $(MAIN_VENV)/.installed
# transformers 4.57 (llamafactory 0.9.5 allows it too) in a folder of its own beside the release venv, for
# tests/test_assemble_hub.py's loading check (it runs a fresh interpreter with this folder on PYTHONPATH); no
# dependencies: the venv's torch and tokenizers serve it, with the huggingface_hub 0.x it needs. Made once.
TF457_DIR := $(VENV)/.transformers-4.57
TF457_STAMP := $(TF457_DIR)/.installed
TF457_PACKAGES := transformers==4.57.6 huggingface_hub==0.36.2
DEMO_DIR ?= runs/demo
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# pip, quiet; this machine's pip configuration names an index folder that lacks most projects, and pip warns
# "Location ... is ignored" once per project: those lines are dropped, everything else pip says is kept.
PIP_FLAGS := --disable-pip-version-check -q
PIP_FILTER := 2>&1 | sed -u "/^WARNING: Location '.*' is ignored: it is neither a file nor a directory/d"
# "llamafactory X, transformers Y" of an environment's python
VERSIONS := -c 'from importlib.metadata import version as v; print("llamafactory", v("llamafactory") + ", transformers", v("transformers"))'

# Host-facing tests the main run leaves out, to keep `make test` inside CI's time: the release run has them, and
# their outcome does not depend on the host's version or its pins (tests/test_host_matrix.py checks that each
# entry still exists). In order: both hosts are covered by the test itself; transformers 4.57 in its own folder;
# the assembler's CLI errors; an assembled checkpoint trained by llamafactory-cli (test_cli_train does the same on
# main); the predictor's resume after SIGKILL (its use of the host's template: the other predict tests); torch
# aborting at exit with the plugin off; the benchmarks' smoke runs and the speed benchmark's tiny run (benchmarks/ pin the release host,
# benchmarks/gpu_wheels.txt); the hook's opt-out variable and two more import orders of our own modules (one
# stays); `llava-lf group-modality` (our regrouping, the host's import is incidental); ZeRO-2 stage 1 (ZeRO-2
# stays in stage 2, stage 1's freezing in test_recipe_stages); ten documented training commands whose YAMLs differ
# from a run kept on main only in hyperparameters (the v1 recipes, ScienceQA's, stage 1 under DDP, NeXT's full SFT,
# QLoRA): main runs every engine and every kind of run the documents name (none, DDP, ZeRO-2, ZeRO-3, two nodes,
# export, api, webchat) through the others; and three engine tests whose run main already makes as a documented
# command with the same DeepSpeed, PEFT and torch (both hosts pin the same): the LoRA recipe under ZeRO-3 with
# checkpointing (llava1_5_lora_sft-ZeRO-3), NeXT's LoRA under ZeRO-3 (llava1_6_lora_sft-ZeRO-3), LoRA under ZeRO-2
# (the two pretrain-ZeRO-2 runs reach the same engine); predict's killed rank (our part files; the two-process
# run stays); the NeXT demo's smoke run (NeXT's stage 2, export and serving run on main in test_training_next and
# test_next_serving; the 1.5 demo's smoke stays); v1's recipe runs (test_recipe_v1: v1's YAMLs differ from 1.5's,
# which main trains, in hyperparameters; stage freezing on main: test_recipe_stages) and NeXT's stage-1 command
# (its YAML is 1.5's stage 1 but for the model and output paths; llava1_5_pretrain-ZeRO-2 stays).
MAIN_DESELECT := \
	--deselect tests/test_host_install.py \
	--deselect tests/test_assemble_hub.py::test_loads_under_transformers_4_57_with_no_missing_or_unexpected_keys \
	--deselect tests/test_assemble_next_hub.py::test_next_checkpoints_load_and_run_under_transformers_4_57 \
	--deselect tests/test_assemble_cli.py::test_cli_reports_bad_input_with_exit_code_2 \
	--deselect tests/test_assemble_cli.py::test_cli_checkpoint_loads_in_transformers_and_trains_with_llamafactory \
	--deselect tests/test_eval_predict.py::test_predict_resumes_after_sigkill_without_duplicates_or_losses \
	--deselect tests/test_exit_after_generation.py::test_without_the_plugin_the_same_exit_aborts \
	--deselect tests/test_benchmarks_smoke.py \
	--deselect tests/test_speed_benchmark.py::test_tiny_benchmark_trains_both_paths_to_the_same_loss_curve \
	--deselect tests/test_speed_benchmark.py::test_the_two_paths_use_their_own_templates_and_options \
	--deselect tests/test_hook.py::test_opt_out_environment_variable \
	--deselect 'tests/test_hook.py::test_importing_our_modules_first_still_registers[llava_lf.templates.mm_plugin]' \
	--deselect 'tests/test_hook.py::test_importing_our_modules_first_still_registers[llava_lf.host.registration]' \
	--deselect tests/test_training_options.py::test_group_modality_cli_writes_and_registers_every_row \
	--deselect tests/test_training_deepspeed.py::test_zero2_stage1_trains_only_the_projector \
	--deselect tests/test_training_deepspeed.py::test_zero2_stage2_lora_and_projector_each_at_its_own_rate \
	--deselect tests/test_training_zero3_lora.py::test_lora_recipe_trains_under_zero3_with_checkpointing \
	--deselect tests/test_training_zero3_lora.py::test_checkpointing_changes_no_result \
	--deselect tests/test_training_next.py::test_lora_under_zero3_on_two_processes \
	--deselect tests/test_eval_distributed.py::test_a_killed_rank_loses_nothing_and_one_process_finishes_without_repeats \
	--deselect tests/test_demo.py::test_next_demo_end_to_end_smoke \
	--deselect tests/test_recipe_v1.py::test_v1_stage1_trains_only_the_linear_projector \
	--deselect tests/test_recipe_v1.py::test_v1_fine_tunes_train_llm_and_projector_not_clip \
	--deselect 'tests/test_documented_commands.py::test_documented_command_runs[train-llava1_6_pretrain-ZeRO-2]' \
	--deselect 'tests/test_documented_commands.py::test_documented_command_runs[train-llava_v1_pretrain-ZeRO-2]' \
	--deselect 'tests/test_documented_commands.py::test_documented_command_runs[train-llava_v1_full_sft-ZeRO-2]' \
	--deselect 'tests/test_documented_commands.py::test_documented_command_runs[train-llava_v1_full_sft-ZeRO-3]' \
	--deselect 'tests/test_documented_commands.py::test_documented_command_runs[train-llava_v1_sqa_full_sft-ZeRO-2]' \
	--deselect 'tests/test_documented_commands.py::test_documented_command_runs[train-llava_v1_sqa_full_sft-ZeRO-3]' \
	--deselect 'tests/test_documented_commands.py::test_documented_command_runs[train-llava1_5_sqa_lora_sft-DDP]' \
	--deselect 'tests/test_documented_commands.py::test_documented_command_runs[train-llava1_5_pretrain-DDP]' \
	--deselect 'tests/test_documented_commands.py::test_documented_command_runs[train-llava1_6_sft-ZeRO-3]' \
	--deselect 'tests/test_documented_commands.py::test_documented_command_runs[train-llava1_5_qlora_sft-none]' \
	--deselect 'tests/test_documented_commands.py::test_documented_command_runs[train-llava1_5_qlora_sft-ZeRO-2]'

PYTEST_MAIN := $(MAIN_BIN)/python -m pytest -m host $(MAIN_DESELECT)
# The venv is made again when the host's main changes (another wheel or URL, or a newer wheel).
MAIN_STAMP_STALE := $(if $(filter-out $(HOST_MAIN_ID),$(shell cat $(MAIN_STAMP) 2>/dev/null)),host-main-changed)

.PHONY: demo test test-fast test-release test-main lint install install-main host-main host-main-changed \
	transformers-4.57 audit-host clean-demo

install: $(STAMP)

install-main: $(MAIN_STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python >= 3.11 not found; run: make PYTHON=/path/to/python3.11 ..."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev]' $(PIP_FILTER)
	@echo "$(VENV) (release host): $$($(BIN)/python $(VERSIONS))"
	touch $(STAMP)

# Prints the host's main a run would use (wheel or git URL), after checking it can be had.
host-main:
	@$(NEED_HOST_MAIN)
	@echo "$(if $(HOST_MAIN_IS_GIT),git,wheel) $(HOST_MAIN)"

# A fresh venv (made again when the host's main changes): the host's main with the host's own pins, then the
# project, which must leave that host and its transformers as they were.
$(MAIN_STAMP): pyproject.toml $(if $(HOST_MAIN_IS_GIT),,$(wildcard $(HOST_MAIN))) $(MAIN_STAMP_STALE)
	@test -n "$(PYTHON)" || { echo "Python >= 3.11 not found; run: make PYTHON=/path/to/python3.11 ..."; exit 1; }
	@$(NEED_HOST_MAIN)
	@if test -f $(MAIN_STAMP) && { ! grep -qxF "$(HOST_MAIN_ID)" $(MAIN_STAMP) \
		|| { test -z "$(HOST_MAIN_IS_GIT)" && test "$(HOST_MAIN)" -nt $(MAIN_STAMP); }; }; then \
		echo "new host main: remaking $(MAIN_VENV)"; rm -rf $(MAIN_VENV); fi
	test -x $(MAIN_BIN)/python || $(PYTHON) -m venv $(MAIN_VENV)
	$(MAIN_BIN)/python -m pip install $(PIP_FLAGS) "$(HOST_MAIN)" $(PIP_FILTER)
	$(MAIN_BIN)/python $(VERSIONS) > $(MAIN_VENV)/.host-versions
	$(MAIN_BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev]' $(PIP_FILTER)
	@kept="$$(cat $(MAIN_VENV)/.host-versions)"; now="$$($(MAIN_BIN)/python $(VERSIONS))"; \
	if test "$$kept" != "$$now"; then echo "$(MAIN_VENV): installing the project replaced the host: $$kept ->" \
		"$$now; check pyproject.toml's dependencies against the host's pins"; exit 1; fi; \
	echo "$(MAIN_VENV) (host main, $(if $(HOST_MAIN_IS_GIT),$(HOST_MAIN),$(notdir $(HOST_MAIN)))): $$now" \
		"(kept after installing the project)"
	echo "$(HOST_MAIN_ID)" > $(MAIN_STAMP)

host-main-changed:

transformers-4.57: $(TF457_STAMP)

$(TF457_STAMP): | $(STAMP)
	rm -rf $(TF457_DIR)
	$(BIN)/python -m pip install $(PIP_FLAGS) --no-deps --target $(TF457_DIR) $(TF457_PACKAGES) $(PIP_FILTER)
	echo "$(TF457_PACKAGES)" > $(TF457_STAMP)

# NEXT=1: LLaVA-NeXT beside LLaVA-1.5 on pictures with small shapes (`llava-lf demo --next`), in $(DEMO_DIR)_next;
# it takes the text warm-up of an earlier `make demo` when there is one (the same text)
DEMO_WARM = $(wildcard $(DEMO_DIR)/models/llama_warm/trainer_state.json)
demo: $(STAMP)
	$(BIN)/llava-lf demo $(if $(NEXT),--next --out $(DEMO_DIR)_next $(if $(DEMO_WARM),--warm-lm $(dir $(DEMO_WARM))),--out $(DEMO_DIR))

# Lint and the package's layering contracts (pyproject.toml [tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check plugin tests $(wildcard benchmarks)
	$(BIN)/lint-imports

# Lint, the whole suite on the release host, then the host-facing tests on the host's main branch. Both suites
# run even when the first fails, so one CI run shows both; the exit status is a failure if either failed.
test: lint $(MAIN_STAMP) $(TF457_STAMP)
	@status=0; \
	echo "== whole suite, release host: $$($(BIN)/python $(VERSIONS))"; \
	$(BIN)/python -m pytest || status=1; \
	echo "== host-facing tests (-m host), host main: $$($(MAIN_BIN)/python $(VERSIONS))"; \
	$(PYTEST_MAIN) || status=1; \
	exit $$status

test-release: $(STAMP) $(TF457_STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-main: $(MAIN_STAMP)
	$(PYTEST_MAIN)

# Runs the files not marked `host` with a `llamafactory` that cannot be imported: each failure is a test that
# reaches the host without the mark (tests/test_host_matrix.py sees only the host's names in a file). A few minutes.
audit-host: $(STAMP)
	@rm -rf $(VENV)/.no-host && mkdir -p $(VENV)/.no-host/llamafactory
	@echo 'raise ImportError("make audit-host: this test reaches llamafactory; mark its file pytest.mark.host")' \
		> $(VENV)/.no-host/llamafactory/__init__.py
	files=$$(cd tests && ../$(BIN)/python -c 'import pathlib, test_host_matrix as m; print(" ".join( \
		f"tests/{p.name}" for p in sorted(pathlib.Path().glob("test_*.py")) if "host" not in m.module_marks(p)))'); \
	PYTHONPATH=$(abspath $(VENV)/.no-host) $(BIN)/python -m pytest -m "not host" -p no:cacheprovider $$files

clean-demo:
	rm -rf $(DEMO_DIR)

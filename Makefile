# raysplat developer commands. `make demo` and `make test` work on a fresh machine.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
PIP     := $(VPY) -m pip
STAMP   := $(VENV)/.raysplat-deps

.PHONY: demo test test-rust test-python test-wheel build wheel bench bench-quality lint fmt clean

$(VPY):
	$(PY) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Dependencies, read from pyproject.toml (core + the `all` and `dev` extras). torch is installed
# first and only when it is not importable already (it is several GB).
$(STAMP): $(VPY) pyproject.toml scripts/deps.py
	$(VPY) -c "import torch" 2>/dev/null || $(PIP) install "torch>=2.1"
	$(VPY) scripts/deps.py all dev > $(VENV)/requirements.txt
	$(PIP) install --quiet -r $(VENV)/requirements.txt
	touch $(STAMP)

# Release build of the extension, installed editable into .venv.
build: $(STAMP)
	rm -f python/raysplat/_core*.so
	VIRTUAL_ENV=$(abspath $(VENV)) $(VPY) -m maturin develop --release --quiet

# The main job: generate the sample Blender scene, train the default NeRF on CPU (about 5 min).
demo: build
	$(VPY) examples/nerf_demo.py --out out/nerf_demo

test-rust:
	cargo test -p raysplat-core --release

# tests/test_cuda.py skips without CUDA; its second run proves the same tests on CPU (twin vs Rust).
test-python: build
	$(VPY) -m pytest -q tests
	RAYSPLAT_TEST_DEVICE=cpu $(VPY) -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_cuda_trainers.py

test-wheel: $(STAMP)
	bash scripts/check_wheel.sh

test: build test-rust test-python test-wheel

wheel: $(STAMP)
	$(VPY) -m maturin build --release --out dist

bench: build
	cargo bench -p raysplat-core
	$(VPY) benches/sampling.py --json benches/results/sampling.json
	$(VPY) benches/splat.py --json benches/results/splat.json
	$(VPY) benches/knn.py --json benches/results/knn.json
	$(VPY) benches/projection.py --json benches/results/projection.json
	$(VPY) scripts/readme_tables.py

# Training quality vs wall time (several minutes each).
bench-quality: build
	$(VPY) benches/nerf_quality.py
	$(VPY) benches/gs_quality.py

lint: $(STAMP)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VPY) -m ruff check python tests benches examples

fmt:
	cargo fmt --all
	$(VPY) -m ruff format python tests benches examples

clean:
	rm -rf target dist python/raysplat/_core*.so

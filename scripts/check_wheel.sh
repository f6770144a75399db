#!/usr/bin/env bash
# Builds the abi3 wheel and checks that it installs and imports in a fresh virtual environment
# with no Rust toolchain on PATH. torch/numpy are borrowed from .venv (added after the fresh
# environment's own site-packages) so the check does not download them again.
set -euo pipefail
cd "$(dirname "$0")/.."
VPY=.venv/bin/python
rm -rf dist
"$VPY" -m maturin build --release --out dist --quiet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$VPY" -m venv --without-pip "$tmp/venv"
"$VPY" -m pip --python "$tmp/venv/bin/python" install --quiet --no-deps dist/raysplat-*.whl
site_new=$("$tmp/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
site_dev=$("$VPY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$site_dev" > "$site_new/zz_borrowed_deps.pth"
cd "$tmp"
env -i PATH=/usr/bin:/bin HOME="$tmp" "$tmp/venv/bin/python" - <<'PY'
import shutil, torch, raysplat
assert shutil.which("cargo") is None, "cargo must not be on PATH for this check"
assert "site-packages" in raysplat.__file__, raysplat.__file__
assert raysplat._core.__file__.endswith(".abi3.so"), raysplat._core.__file__
w, t, a = raysplat.render_weight_from_density(torch.zeros(2, 3), torch.ones(2, 3), torch.ones(2, 3))
assert w.shape == (2, 3)
print(f"wheel OK: raysplat {raysplat.__version__} imported from {raysplat.__file__}")
PY

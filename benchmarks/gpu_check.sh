#!/usr/bin/env bash
# The GPU check of issue 28 in one device call (benchmarks/gpu_check.py says what it measures), run from the repo root:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
# The device has its own CUDA torch and no network: the project's other packages travel as wheels in .whl/
# (git-ignored), fetched here beforehand for the device's Python 3.12, without torch (docs/benchmarks.md):
#   grep -v '^torch' requirements.txt | sed 's/ *#.*//' | grep . | xargs python3 -m pip download --only-binary=:all: \
#     --python-version 3.12 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl
set -u
OUT=${OUT:-benchmarks/out/gpu_check}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl >"$OUT/install.log" 2>&1 \
    || { echo "error: installing the wheels in .whl/ failed: see $OUT/install.log"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 OUT
python3 benchmarks/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"

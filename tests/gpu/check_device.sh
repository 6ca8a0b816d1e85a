#!/usr/bin/env bash
# Checks grm-tracker's GPU paths on a machine with an NVIDIA GPU, in under five minutes.
#
#   tests/gpu/check_device.sh            # from anywhere; PYTHON=... picks the interpreter (default: python)
#
# Environment: an install with the `gpu` extra (onnxruntime-gpu, tensorrt, cuda-python), never together with
# the CPU extras, plus the test tools: pip install -e ".[gpu]" pytest onnx --extra-index-url https://pypi.nvidia.com
# (onnx also lets step 4 run grm-calibrate; torch, when present, adds the export tests to step 2).
#
# Steps: 1 setup (GPU, onnxruntime-gpu alone, test tools), 2 the gpu-marked tests, 3 ONNX Runtime CUDA vs CPU
# on the fixture sequence, 4 TensorRT FP32 and INT8 engines vs ONNX Runtime CPU (skipped without tensorrt).
# Exit status: 0 all passed (TensorRT steps may be skipped), 1 a check failed, 2 the machine or install is unusable.
set -u
cd "$(dirname "$0")/../.." || exit 2
PY=${PYTHON:-python}
LOGS=$(mktemp -d -t grm-check-XXXXXX)
declare -a SUMMARY=()
FAILED=0

note() { SUMMARY+=("$(printf '%-5s %-34s %s' "$1" "$2" "$3")"); }

finish() {
    echo
    echo "== grm-tracker GPU check: summary (logs in $LOGS) =="
    printf '%s\n' "${SUMMARY[@]}"
    exit "$1"
}

setup_fail() { note FAIL "setup" "$1"; finish 2; }

# step NAME LIMIT_SECONDS COMMAND...: run with a time limit; rc 0 PASS, 77 SKIP, 124 TIMEOUT, else FAIL.
step() {
    local name=$1 limit=$2 log rc start
    shift 2
    log="$LOGS/${name// /_}.log"
    echo "== $name (limit ${limit}s)"
    start=$(date +%s)
    timeout "$limit" "$@" >"$log" 2>&1
    rc=$?
    local took="$(( $(date +%s) - start ))s"
    case $rc in
        0) note PASS "$name" "$took"; grep -E '^(PASS|SKIP|     )' "$log" || true ;;
        77) note SKIP "$name" "$(grep -m1 '^SKIP' "$log" | cut -c6-)" ;;
        124) note FAIL "$name" "timed out after ${limit}s"; FAILED=1; tail -n 30 "$log" ;;
        *) note FAIL "$name" "exit $rc after $took, see $log"; FAILED=1; tail -n 30 "$log" ;;
    esac
    return $rc
}

# 1. setup --------------------------------------------------------------------------------------------
command -v nvidia-smi >/dev/null || setup_fail "nvidia-smi not found: no NVIDIA driver on this machine"
GPU=$(nvidia-smi -L 2>/dev/null | head -n 1)
[ -n "$GPU" ] || setup_fail "nvidia-smi lists no GPU"
echo "== $GPU"
"$PY" - <<'EOF' >"$LOGS/setup.log" 2>&1 || setup_fail "$(tail -n 1 "$LOGS/setup.log")"
import importlib.metadata as md
import importlib.util

def installed(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None

if installed("onnxruntime") and installed("onnxruntime-gpu"):
    raise SystemExit("onnxruntime and onnxruntime-gpu are both installed; they overwrite each other: "
                     "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")
import onnxruntime
if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
    raise SystemExit(f"onnxruntime {onnxruntime.__version__} has no CUDA provider: pip install onnxruntime-gpu")
missing = [m for m in ("grm.runtime", "pytest", "onnx") if importlib.util.find_spec(m) is None]
if missing:
    raise SystemExit(f"missing {', '.join(missing)}: pip install -e '.[gpu]' pytest onnx")
print("onnxruntime", onnxruntime.__version__, "tensorrt", installed("tensorrt") or installed("tensorrt-cu12")
      or installed("tensorrt-cu13") or "absent", "cuda-python", installed("cuda-python") or "absent")
EOF
note PASS "setup" "$(tail -n 1 "$LOGS/setup.log")"

# 2. gpu-marked tests -----------------------------------------------------------------------------------
PATHS=(tests/runtime tests/gpu)
if "$PY" -c "import torch, grm.export" 2>/dev/null; then PATHS+=(tests/export tests/calibration); fi
step "gpu-marked tests" 120 "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider "${PATHS[@]}"
if grep -q "SKIPPED.*needs onnxruntime-gpu and an NVIDIA GPU" "$LOGS/gpu-marked_tests.log" 2>/dev/null; then
    SUMMARY[${#SUMMARY[@]}-1]="$(printf '%-5s %-34s %s' FAIL "gpu-marked tests" \
        "the CUDA provider tests were skipped on a GPU machine, see $LOGS/gpu-marked_tests.log")"
    FAILED=1
fi

# 3. ONNX Runtime CUDA vs CPU -----------------------------------------------------------------------------
step "onnxruntime cuda vs cpu" 45 "$PY" tests/gpu/check_device.py ort

# 4. TensorRT --------------------------------------------------------------------------------------------
step "tensorrt fp32 + int8 vs cpu" 120 "$PY" tests/gpu/check_device.py tensorrt

finish "$FAILED"

#!/usr/bin/env bash
# GPU check (issue 11): the CUDA half of the device-parametrised tests, then training-step timings on the GPU.
#
#   bash benchmarks/gpu_check.sh                 # results in ./gpu_check_out (or $OUT)
#   GPU_CHECK_DEVICE=cpu bash benchmarks/gpu_check.sh   # dry run of the same steps on a machine without a GPU
#
# Needs only torch and pytest (no gymnasium, MuJoCo or the package's other dependencies): the tests it runs import
# torch and decision_minrnn.nn only, and it runs from the repository root without installing the package.
# Budget: under 8 minutes on one GPU (each step has its own timeout); every step's log lands in $OUT.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu_check_out}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
status=0

echo "== environment" | tee "$OUT/summary.txt"
"$PY" - <<'PYEOF' 2>&1 | tee "$OUT/env.txt" | tee -a "$OUT/summary.txt"
import os, platform, torch
print("torch", torch.__version__, "| cuda", torch.version.cuda, "| python", platform.python_version())
print("cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(0))
print("load average:", os.getloadavg())
PYEOF
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "torch sees no CUDA device: nothing to check (GPU_CHECK_DEVICE=cpu runs a dry run)" | tee -a "$OUT/summary.txt"
    exit 2
fi
SELECT=(-m cuda)
[ "$DEVICE" = cuda ] || SELECT=(-m "not cuda" -k cpu)  # dry run: the CPU half of the same device-parametrised tests

echo "== tests (${SELECT[*]}): law, scan gradchecks, S4D convolution / Mamba chunked scan, train + act" \
    | tee -a "$OUT/summary.txt"
timeout 300 "$PY" -m pytest "${SELECT[@]}" -q -p no:cacheprovider -o addopts="" \
    tests/test_backbones.py tests/test_s4_mamba.py tests/test_devices.py \
    --junitxml="$OUT/pytest.xml" > "$OUT/pytest.txt" 2>&1
rc=$?
tail -n 3 "$OUT/pytest.txt" | tee -a "$OUT/summary.txt"
[ $rc -eq 0 ] || { echo "tests FAILED (exit $rc), see pytest.txt" | tee -a "$OUT/summary.txt"; status=1; }

echo "== training-step timings on $DEVICE (DecisionModel small config; Transformer vs plain fused attention)" \
    | tee -a "$OUT/summary.txt"
timeout 180 "$PY" benchmarks/s4_mamba_speed.py --device "$DEVICE" --part model --rounds 5 --per-round 5 \
    --profile --out "$OUT/model" > "$OUT/speed_model.txt" 2>&1 || { echo "model timing failed"; status=1; }
grep -A 7 "DecisionModel small" "$OUT/speed_model.txt" | tee -a "$OUT/summary.txt"
timeout 60 "$PY" benchmarks/s4_mamba_speed.py --device "$DEVICE" --part attention --rounds 5 --per-round 5 \
    --out "$OUT/attention" > "$OUT/speed_attention.txt" 2>&1 || { echo "attention timing failed"; status=1; }
grep -A 4 "Transformer d 64" "$OUT/speed_attention.txt" | tee -a "$OUT/summary.txt"

LAYER_T=4096
[ "$DEVICE" = cuda ] || LAYER_T=256  # the dry run stays short
echo "== one layer at T = $LAYER_T (d 128, batch 64): time and peak memory, each in its own process" \
    | tee -a "$OUT/summary.txt"
timeout 150 "$PY" benchmarks/s4_mamba_speed.py --device "$DEVICE" --part layer --layer-T "$LAYER_T" \
    --layer-repeats 3 --layer-timeout 40 --out "$OUT/layer" > "$OUT/speed_layer.txt" 2>&1 \
    || { echo "layer timing failed"; status=1; }
grep -A 6 "One layer" "$OUT/speed_layer.txt" | tee -a "$OUT/summary.txt"

echo "== done (exit $status); results in $OUT" | tee -a "$OUT/summary.txt"
exit $status

# Sourced by the one-call device scripts (attention_kernels_call.sh, device_session_call.sh) after
# `cd` to the repository root: a time budget of LIMIT seconds from now (`left` prints what remains),
# the CUDA build to use ($BUILD, default build-gpu, linked as ./build for the bench scripts), the
# call's work folder $out = ${OUT:-/tmp}/<name> (packed into one archive at the end: a device call
# returns at most 8 files), and the device line in $out/device.txt.
#   source scripts/bench/device_call_common.sh NAME LIMIT_SECONDS
T0=$(date +%s)
LIMIT=$2
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
build=${BUILD:-build-gpu}
out=${OUT:-/tmp}/$1
mkdir -p "$out"
[ -e build ] || ln -s "$build" build  # the bench scripts call ./build/sparsek
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"

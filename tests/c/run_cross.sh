#!/usr/bin/env bash
# The C kernels on aarch64 against x86-64: build tests/c/kernel_check.c natively and
# with the aarch64 cross compiler, run the aarch64 builds under qemu-user, and compare
# (tests/c/compare.py says what each comparison allows):
#
#   native, -ffp-contract=off      against NumPy references, and against ...
#   aarch64, -ffp-contract=off     ... bit for bit (the same operations in the same order)
#   aarch64, setup.py's flags      against NumPy references, and within 32 ulps of the
#                                  native build (GCC contracts a * b + c into fused
#                                  multiply-adds on aarch64, which always has FMA)
#
# The native build skips the x86 target_clones (BPCORE_NO_CLONES): with contraction
# off every clone computes the same bits, and one copy compiles three times faster.
#
# Environment: CC (native compiler, default gcc), CROSS_CC (aarch64-linux-gnu-gcc),
# QEMU (qemu-aarch64), CROSS_SYSROOT (/usr/aarch64-linux-gnu, the target's libraries),
# PYTHON (python3, with numpy). Exit status 77 when a tool is missing (nothing run).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CC=${CC:-gcc}
CROSS_CC=${CROSS_CC:-aarch64-linux-gnu-gcc}
QEMU=${QEMU:-qemu-aarch64}
CROSS_SYSROOT=${CROSS_SYSROOT:-/usr/aarch64-linux-gnu}
PYTHON=${PYTHON:-python3}

for tool in "$CC" "$CROSS_CC" "$QEMU" "$PYTHON"; do
    if ! command -v "$tool" > /dev/null; then
        echo "run_cross.sh: $tool not found; on Debian:" \
             "apt-get install gcc-aarch64-linux-gnu qemu-user" >&2
        exit 77
    fi
done

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# setup.py's release flags, and warnings on
FLAGS=(-O3 -fno-math-errno -pthread -Wall -Wextra -Wno-psabi
       -I"$ROOT/src" -I"$HERE" "$HERE/kernel_check.c" "$ROOT/src/_kernels_f32.c"
       "$ROOT/src/_kernels_f64.c" -lm)
SECONDS=0

# three builds, two at a time (-O3 over every kernel takes a minute or more each)
build() {  # name compiler flags...
    local name=$1 cc=$2
    shift 2
    if ! "$cc" "$@" "${FLAGS[@]}" -o "$OUT/$name" 2> "$OUT/$name.log"; then
        cat "$OUT/$name.log" >&2
        echo "run_cross.sh: $name did not build" >&2
        return 1
    fi
    cat "$OUT/$name.log" >&2
}
build native_exact "$CC" -ffp-contract=off -DBPCORE_NO_CLONES & a=$!
build aarch64_exact "$CROSS_CC" -ffp-contract=off & b=$!
wait "$a"
build aarch64_release "$CROSS_CC" & c=$!
wait "$b"
wait "$c"
echo "built in ${SECONDS}s ($("$CROSS_CC" --version | head -n 1))"

"$OUT/native_exact" "$OUT/native_exact.txt"
for name in aarch64_exact aarch64_release; do
    "$QEMU" -L "$CROSS_SYSROOT" "$OUT/$name" "$OUT/$name.txt"
done
echo "ran in ${SECONDS}s"

status=0
check() {  # what, compare.py arguments...
    local what=$1
    shift
    echo "-- $what"
    "$PYTHON" "$HERE/compare.py" "$@" || status=1
}
check "native build against NumPy" reference "$OUT/native_exact.txt"
check "aarch64 release build against NumPy" reference "$OUT/aarch64_release.txt"
check "aarch64 against native, contraction off" same \
    "$OUT/aarch64_exact.txt" "$OUT/native_exact.txt"
check "aarch64 release build against native" close --ulps 32 \
    "$OUT/aarch64_release.txt" "$OUT/native_exact.txt"
echo "compared in ${SECONDS}s"
exit "$status"

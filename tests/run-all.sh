#!/usr/bin/env bash
# Runs every suite (unit, unit under ASan/UBSan, integration, nested KVM) and prints
# one closing line "N passed, N failed" counted from the JUnit files each suite writes.
# Usage: tests/run-all.sh [suite...]   (default: all suites)
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. build/conduit-env.sh
results=$top/build/test-results
rm -rf "$results"
mkdir -p "$results"
suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
    suites=(unit asan fuzz integration)
    # The nested-KVM suite joins once it has tests (conduit-vmm's issue).
    ls tests/nested/test_*.py >/dev/null 2>&1 && suites+=(nested)
fi
py=/usr/bin/python3

note_crash() {  # a suite that ended without writing its results counts as one failure
    "$py" tests/lib/junit.py crash "$results/$1-crash.xml" "$1" "$2"
}

for suite in "${suites[@]}"; do
    echo "=== suite: $suite"
    case "$suite" in
        unit)
            # meson's JUnit log lists every GoogleTest case (protocol gtest) and a whole
            # binary that crashed.
            rm -f build/release/meson-logs/testlog.junit.xml
            meson test -C build/release --suite unit --print-errorlogs --num-processes 2 \
                >"$results/unit.log" 2>&1
            rc=$?; tail -n 20 "$results/unit.log"
            cp build/release/meson-logs/testlog.junit.xml "$results/unit.xml" 2>/dev/null ||
                note_crash unit "meson test exited $rc"
            ;;
        asan)
            if [ ! -f build/asan/build.ninja ]; then
                meson setup build/asan -Db_sanitize=address,undefined -Db_lundef=false \
                    --buildtype=debug >"$results/asan-setup.log" 2>&1 || { cat "$results/asan-setup.log"; }
            fi
            mkdir -p "$results/asan"
            rm -f build/asan/meson-logs/testlog.junit.xml
            ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
            meson test -C build/asan --suite unit --print-errorlogs --num-processes 2 \
                >"$results/asan.log" 2>&1
            rc=$?; tail -n 20 "$results/asan.log"
            cp build/asan/meson-logs/testlog.junit.xml "$results/asan/unit.xml" 2>/dev/null ||
                note_crash asan "meson test exited $rc"
            ;;
        fuzz)
            # Every libFuzzer target for a bounded time (CONDUIT_FUZZ_SECONDS, default 30).
            if [ ! -f build/fuzz/build.ninja ]; then
                CXX=clang++ CC=clang meson setup build/fuzz -Dfuzz=true --buildtype=debugoptimized \
                    >"$results/fuzz-setup.log" 2>&1 || cat "$results/fuzz-setup.log"
            fi
            if ninja -C build/fuzz >"$results/fuzz-build.log" 2>&1; then
                "$py" tests/fuzz/run.py build/fuzz "$results/fuzz.xml" \
                    --seconds "${CONDUIT_FUZZ_SECONDS:-30}" 2>&1 | tee "$results/fuzz.log"
            else
                tail -n 30 "$results/fuzz-build.log"
            fi
            [ -f "$results/fuzz.xml" ] || note_crash fuzz "fuzz build or run failed (see fuzz-build.log)"
            ;;
        integration|nested)
            # One rig user at a time on this machine (polling switches, QEMU, fixed netns
            # and socket names): concurrent checkouts wait for each other here.
            "$top/tools/rig-lock" "$py" -m pytest -p no:cacheprovider -v "tests/$suite" \
                --junitxml="$results/$suite.xml" 2>&1 | tee "$results/$suite.log"
            rc=${PIPESTATUS[0]}
            [ -f "$results/$suite.xml" ] || note_crash "$suite" "pytest exited $rc"
            ;;
        *) echo "unknown suite $suite" >&2; note_crash "$suite" "unknown suite" ;;
    esac
done

"$py" tests/lib/junit.py summary "$results"

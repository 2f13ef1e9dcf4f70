#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs the unit, golden and fuzz
# corpus tests (normal build and an ASan+UBSan build), then the integration tests with real
# QEMU, then the daemon and CLI integration tests again against the sanitizer build (any
# sanitizer report counts as a failure). Ends with the line "N passed, N failed" (", N skipped" when any were skipped).
set -uo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

echo "== unit, golden and fuzz-corpus tests"
meson test -C build --print-errorlogs --num-processes 2

echo "== the same tests built with AddressSanitizer and UndefinedBehaviorSanitizer"
if [ ! -f build-asan/build.ninja ]; then
  CC=clang meson setup build-asan -Dwerror=true -Db_sanitize=address,undefined \
    -Db_lundef=false -Dbuildtype=debug >/dev/null
fi
meson compile -C build-asan >/dev/null
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-asan --print-errorlogs --num-processes 2

echo "== integration tests with real QEMU (TCG) and the test guest"
/usr/bin/python3 -m pytest tests/integration -v -rs --junitxml="$results/pytest.xml"

echo "== vmletd and the CLI again, built with the sanitizers (reports fail the run)"
mkdir -p "$results/asan"
VMLET_BUILD_DIR=build-asan \
  ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0:log_path=$results/asan/asan" \
  LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS="print_stacktrace=1:log_path=$results/asan/ubsan" \
  /usr/bin/python3 -m pytest tests/integration/test_daemon.py tests/integration/test_cli.py \
  tests/integration/test_changes.py tests/integration/test_hotplug.py \
  tests/integration/test_migration.py tests/integration/test_migration_untrusted.py \
  tests/integration/test_migration_commit.py tests/integration/test_migration_converge.py \
  tests/integration/test_drain.py \
  -v -rs --junitxml="$results/pytest-asan.xml"
if compgen -G "$results/asan/*" >/dev/null; then
  echo "sanitizer reports:"; cat "$results"/asan/*
  sanitizer_reports="sanitizer-reports:$results/asan"
fi

/usr/bin/python3 tests/summarize.py \
  "normal:build/meson-logs/testlog.json" \
  "asan:build-asan/meson-logs/testlog.json" \
  "pytest:$results/pytest.xml" \
  "pytest-asan:$results/pytest-asan.xml" \
  ${sanitizer_reports:+"$sanitizer_reports"}

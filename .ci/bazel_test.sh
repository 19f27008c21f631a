#!/usr/bin/env bash
# CI: the Bazel targets (//:BUILD), offline. Installs Debian's bazel-bootstrap
# when no `bazel` is on PATH, builds every target (the cinc_tfp py_library, the
# train/ py_binary commands) and runs the py_tests tagged "bijectors" (one per
# tests/test_*.py of a cinc_tfp/bijectors module) and "commands" (the binaries
# run through a tiny cycle), on the python3 that
# `pip install -e '.[test]'` installed into.
#
#   bash .ci/bazel_test.sh                       # build all, bijector tests
#   bash .ci/bazel_test.sh //:all                # other targets / patterns
#   bash .ci/bazel_test.sh -- //:test_actnorm --test_filter=inverse
#
# Arguments, if any, replace the default
# `--test_tag_filters=bijectors,commands //...`.
# No network is needed: the repositories Bazel 4 would download are replaced
# by the stand-ins in tools/bazel/offline/ (see tools/bazel/README.md).
#
# Environment:
#   CINC_TFP_BAZEL_CACHE  Bazel's output root (default ~/.cache/cinc_tfp_bazel);
#                         nothing is written into the checkout.
#   CINC_TFP_BAZEL_JOBS   tests run at once (default: CPUs, at most 1 per 2 GB).
#   PYTHON                interpreter for the tests (default: python3 on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS

if ! command -v bazel >/dev/null 2>&1; then
  echo "bazel_test: no bazel on PATH; installing Debian's bazel-bootstrap"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  ${sudo[@]+"${sudo[@]}"} apt-get update -qq
  ${sudo[@]+"${sudo[@]}"} apt-get install -y -qq --no-install-recommends bazel-bootstrap \
    >/dev/null
  echo "bazel_test: installed in $((SECONDS - start)) s"
fi

# The interpreter the tests run on: tools/bazel/python3.sh execs
# $PYTHON_BIN_PATH, pinned here to the resolved python3 (not a pyenv shim).
python=$(command -v "${PYTHON:-python3}")
python=$("$python" -c 'import sys; print(sys.executable)')
if ! "$python" -c 'import pytest' 2>/dev/null; then
  echo "bazel_test: $python cannot import pytest; run pip install -e '.[test]'" >&2
  exit 1
fi

cache=${CINC_TFP_BAZEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cinc_tfp_bazel}
mkdir -p "$cache"
cpus=$(nproc 2>/dev/null || echo 2)
mem_gb=$(awk '/MemTotal/ {print int($2 / 1048576)}' /proc/meminfo 2>/dev/null || echo 4)
jobs=${CINC_TFP_BAZEL_JOBS:-$(( cpus < mem_gb / 2 ? cpus : mem_gb / 2 ))}
if [ "$jobs" -lt 1 ]; then jobs=1; fi

bazel=(bazel --output_user_root="$cache" --max_idle_secs=120)
offline="$root/tools/bazel/offline"
flags=(
  --override_repository=rules_cc="$offline/rules_cc"
  --override_repository=rules_java="$offline/rules_java"
  --override_repository=remote_coverage_tools="$offline/remote_coverage_tools"
  --test_env=PYTHON_BIN_PATH="$python"
  --jobs="$jobs"
  --local_test_jobs="$jobs"
  --test_output=errors
  --experimental_convenience_symlinks=ignore
  --color=no
  --curses=no
)
if [ "$#" -gt 0 ]; then
  if [ "$1" = "--" ]; then shift; fi
  targets=("$@")
else
  targets=(--test_tag_filters=bijectors,commands //...)
fi

# Stop the Bazel server on the way out: CI leaves nothing running.
trap '"${bazel[@]}" shutdown >/dev/null 2>&1 || true' EXIT

echo "bazel_test: $(bazel --version 2>/dev/null || echo bazel), python $python," \
  "$jobs test jobs, output root $cache"
log=$(mktemp)
status=0
"${bazel[@]}" test "${flags[@]}" "${targets[@]}" 2>&1 | tee "$log" || status=$?
testlogs=$("${bazel[@]}" info bazel-testlogs 2>/dev/null || true)
echo "bazel_test: bazel test exited $status after $((SECONDS - start)) s in all"
summary=0
"$python" tools/bazel/test_summary.py "$log" "$testlogs" || summary=$?
rm -f "$log"
if [ "$status" -eq 0 ] && [ "$summary" -ne 0 ]; then
  echo "bazel_test: no test ran" >&2
  status=1
fi
exit "$status"

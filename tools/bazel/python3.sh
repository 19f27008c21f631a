#!/bin/sh
# The interpreter of the Bazel Python toolchain (//tools/bazel:python_toolchain).
#
# Bazel runs every py_binary / py_test through this script, so targets use the
# same Python environment that `pip install -e .` installed into: the python3
# found on PATH (.bazelrc passes the client's PATH to tests and `bazel run`),
# or the interpreter named by PYTHON_BIN_PATH when that is set (as
# .ci/bazel_test.sh does, to pin the exact one it checked).
if [ -n "${PYTHON_BIN_PATH:-}" ]; then
  exec "$PYTHON_BIN_PATH" "$@"
fi
exec python3 "$@"

#!/bin/sh
echo "remote_coverage_tools is an offline stand-in (tools/bazel/offline): bazel coverage needs network access" >&2
exit 1

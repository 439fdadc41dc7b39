#!/usr/bin/env bash
# Generates the Python stubs of proto/ into the directory given (default: libs/common's package).
# protoc writes imports as "from suanli.v1 import x_pb2"; the stubs live inside suanli_common,
# so those imports are rewritten to the package path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/libs/common/suanli_common/proto}
py=${PYTHON:-$root/.venv/bin/python}
py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")"  # absolute: we cd below
export PATH="$(dirname "$py"):$PATH"  # protoc-gen-mypy lives beside the interpreter
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root/proto"
"$py" -m grpc_tools.protoc -I. --python_out="$work" --grpc_python_out="$work" --mypy_out="quiet:$work" \
  --mypy_grpc_out="quiet:$work" suanli/v1/*.proto
find "$work/suanli" -name '*.py*' -exec sed -i -E \
  's/^from suanli\.v1 import/from suanli_common.proto.suanli.v1 import/; s/^import suanli\.v1\./import suanli_common.proto.suanli.v1./' {} +
touch "$work/suanli/__init__.py" "$work/suanli/v1/__init__.py"
mkdir -p "$out"
touch "$out/__init__.py"
rm -rf "$out/suanli"
mv "$work/suanli" "$out/suanli"

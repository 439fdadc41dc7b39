#!/usr/bin/env bash
# Generates the Python stubs of proto/ into the directory given (default: libs/common's package).
# protoc writes imports as "from suanli.v1 import x_pb2"; the stubs live inside suanli_common,
# so those imports are rewritten to the package path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/libs/common/suanli_common/proto}
py=${PYTHON:-$root/.venv/bin/python}
rm -rf "$out/suanli"
mkdir -p "$out"
export PATH="$(dirname "$py"):$PATH"
cd "$root/proto"
"$py" -m grpc_tools.protoc -I. --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" \
  --mypy_grpc_out="$out" suanli/v1/*.proto
find "$out/suanli" -name '*.py*' -exec sed -i -E \
  's/^from suanli\.v1 import/from suanli_common.proto.suanli.v1 import/; s/^import suanli\.v1\./import suanli_common.proto.suanli.v1./' {} +
touch "$out/__init__.py" "$out/suanli/__init__.py" "$out/suanli/v1/__init__.py"

#!/bin/sh
# Python code for every gRPC contract under proto/: messages, type stubs and client/server classes. It is generated
# (by `make setup` and the Docker build), never committed, so it always matches the .proto and the installed grpcio.
set -eu
cd "$(dirname "$0")/.."
find proto -name '*.proto' -exec "${PYTHON:-python}" -m grpc_tools.protoc -I . \
  --python_out=. --pyi_out=. --grpc_python_out=. {} +

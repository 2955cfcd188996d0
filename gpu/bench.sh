#!/bin/bash
# Issue #5's device check, call 2 of ../shared/gpu/README.md's protocol: run
# from the repository root on the GPU machine after call 1 unpacked .gpu/.
# Prints PyTorch's figures and the project's on the same CSV, same card.
set -euo pipefail
source .gpu/unpack.sh .gpu
B=.gpubin
for f in $B/*.xz; do xz -d -f -T0 "$f"; done
chmod +x $B/pipeline-cli
W=/tmp/bench && rm -rf $W && mkdir -p $W
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
date -u +"%Y-%m-%dT%H:%MZ"

echo "== bert-base-shaped random checkpoint (PyTorch), converted by the project"
python3 gpu/make_bert_base.py $W/bert-base $B/tokenizer.json

echo "== PyTorch anchor (tutorial mode and best mode)"
python3 .gpu/torch_anchor.py $B/sst2_train.csv $B/tokenizer.json 2>&1 | tail -20

pipeline() { # name, extra lines for [model]/[embed]
  mkdir -p $W/$1
  cat > $W/$1/pipeline.toml <<TOML
[ingest]
csv = "$PWD/$B/sst2_train.csv"
[model]
source = "dir:$W/bert-base"
$2
[encode]
max_len = "auto"
auto_percentile = 100.0
[embed]
pooling = "pooler"
$3
[head]
learning_rate = 1e-3
TOML
}
pipeline fp16 'precision = "fp16"' 'device = "cuda"'
pipeline fp32 'precision = "fp32"' 'device = "cuda"'

for v in fp16 fp32; do
  echo "== project: embed stage, $v, CUDA (cold process: session creation and Parquet writing included)"
  /usr/bin/time -f "wall %e s (model conversion + encode + embed, one process)" \
    $B/pipeline-cli --config $W/$v/pipeline.toml run-pipeline --until embed \
    | grep -E "^(model|encode|embed) |rows/s|session"
done

echo "== fp16 features against fp32 features (same card)"
$B/pipeline-cli --config $W/fp16/pipeline.toml compare-features \
  $W/fp16/artifacts/embed $W/fp32/artifacts/embed

echo "== head on each feature set: CPU backend (flex), test-split accuracy"
for v in fp16 fp32; do
  $B/pipeline-cli --config $W/$v/pipeline.toml run-pipeline \
    | grep -E "^head |best validation|^    accuracy"
done

echo "== head on burn-wgpu (Vulkan), same features as fp16"
for f in .gpu/vulkan/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
for batch in 32 1024; do
  $B/pipeline-cli --config $W/fp16/pipeline.toml run-pipeline \
    --set 'head.backend="wgpu"' --set head.batch_size=$batch --set head.epochs=3 \
    | grep -E "^head |epoch +[0-9]+:|^    accuracy"
  $B/pipeline-cli --config $W/fp16/pipeline.toml run-pipeline \
    --set head.batch_size=$batch --set head.epochs=3 \
    | grep -E "^head |epoch +[0-9]+:"
done

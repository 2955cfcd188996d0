#!/bin/bash
# Issue #18's device check, call 2 of ../shared/gpu/README.md's protocol: run
# from the repository root on the GPU machine after call 1 unpacked .gpu/.
# Prints PyTorch's figures and the project's on the same CSV, same card, one
# call; a copy of everything printed goes to $OUT/bench.log.
# usage: bash gpu/bench.sh [full|confirm|stage]
#   full:    every variant (precisions, operator sets, attention kernels,
#            batch sizes, the head on both backends)
#   confirm: the stage's defaults against PyTorch, a few batch sizes, and the
#            head's CPU backend with fewer threads (a second call's worth)
#   stage:   the whole embed stage only, fp16 and fp32 (about 40 s)
set -uo pipefail # not -e: a failing variant must not lose the other figures
MODE=${1:-full}
OUT=${OUT:-/tmp/gpu-bench-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/bench.log") 2>&1
source .gpu/unpack.sh .gpu >/dev/null
B=.gpubin
for f in $B/*.xz; do # python's lzma: the GPU image may lack xz
  python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$f" "${f%.xz}"
done
chmod +x $B/pipeline-cli
W=/tmp/bench && rm -rf $W && mkdir -p $W
T0=$EPOCHREALTIME
step() { printf '\n== [%5.1fs] %s\n' "$(awk "BEGIN{print $EPOCHREALTIME - $T0}")" "$*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader
date -u +"%Y-%m-%dT%H:%MZ"; nproc

step "bert-base-shaped random checkpoint (PyTorch), converted by the project"
python3 gpu/make_bert_base.py $W/bert-base $B/tokenizer.json

step "PyTorch anchor (tutorial mode and best mode), same CSV, same card"
python3 .gpu/torch_anchor.py $B/sst2_train.csv $B/tokenizer.json --out "$OUT/torch.json" 2>&1 | tail -6

cat > $W/pipeline.toml <<TOML
[ingest]
csv = "$PWD/$B/sst2_train.csv"
[model]
source = "dir:$W/bert-base"
[encode]
max_len = "auto"
auto_percentile = 100.0
[embed]
pooling = "pooler"
device = "cuda"
[head]
learning_rate = 1e-3
TOML
cli() { $B/pipeline-cli --config $W/pipeline.toml "$@"; }

# One variant of the model stage: the whole embed stage in a cold process
# (session creation and Parquet writing included), then timed passes.
variant() { # precision ops
  local sets=(--set "model.precision=\"$1\"" --set "model.ops=\"$2\"")
  step "project: embed stage, $1, ops $2, CUDA (cold process)"
  local TIMEFORMAT="process wall %R s (model conversion + encode + embed)"
  time (cli "${sets[@]}" run-pipeline --until embed | grep -E "^(model|encode|embed) |rows/s|session")
  readlink -f $W/artifacts/embed > "$W/embed-$1-$2"
}
bench() { # label, embed-bench flags
  local label=$1; shift
  step "embed passes: $label"
  cli embed-bench "$@" 2>&1 | grep -vE "^\s*$"
}

if [ "$MODE" = stage ]; then # the whole embed stage, fp16 and fp32
  variant fp16 fused
  bench "fp16 fused, the stage's defaults" --passes 2
  variant fp32 fused
  step "done"
  exit 0
fi
if [ "$MODE" = confirm ]; then
  variant fp16 fused
  bench "fp16 fused, the stage's defaults" --passes 3
  bench "fp16 fused, defaults but ONNX Runtime's choice of attention kernels" --passes 2 --attention auto
  bench "fp16 fused, <=8192 tokens" --passes 2 --batch-tokens 8192
  bench "fp16 fused, <=32768 tokens" --passes 2 --batch-tokens 32768
  bench "fp16 fused, <=65536 tokens" --passes 2 --batch-tokens 65536 --max-batch-rows 65536
  variant fp32 fused
  bench "fp32 fused, the stage's defaults" --passes 2
  step "fp16 against fp32 features (fused operators), same card"
  cli compare-features "$(cat $W/embed-fp16-fused)" "$(cat $W/embed-fp32-fused)"
  for threads in 1 2 4 16; do
    step "head: flex (CPU) with $threads rayon threads, batch 32, 1 epoch"
    RAYON_NUM_THREADS=$threads cli run-pipeline --force head --set 'model.precision="fp16"' \
      --set 'model.ops="fused"' --set head.epochs=1 | grep -E "^head |epoch +[0-9]+:"
  done
  step "done"
  exit 0
fi

variant fp16 fused
bench "fp16 fused, pipeline default batches" --passes 2 --batch-tokens 4096 --max-batch-rows 256
bench "fp16 fused, <=16384 tokens (PyTorch best mode's budget), ONNX Runtime's choice of attention" --passes 3 --batch-tokens 16384 --max-batch-rows 100000 --attention auto
bench "fp16 fused, <=16384 tokens, unfused attention (math)" --passes 2 --batch-tokens 16384 --max-batch-rows 100000 --attention math
if [ "$MODE" = full ]; then
  for k in trt cudnn efficient; do
    bench "fp16 fused, <=16384 tokens, attention $k" --passes 2 --batch-tokens 16384 --max-batch-rows 100000 --attention $k
  done
  bench "fp16 fused, <=32768 tokens" --passes 2 --batch-tokens 32768 --max-batch-rows 100000
  bench "fp16 fused, <=8192 tokens" --passes 2 --batch-tokens 8192 --max-batch-rows 100000
fi
variant fp16 standard
bench "fp16 standard, <=16384 tokens" --passes 2 --batch-tokens 16384 --max-batch-rows 100000
variant fp32 fused
bench "fp32 fused, <=16384 tokens" --passes 2 --batch-tokens 16384 --max-batch-rows 100000
variant fp32 standard
bench "fp32 standard, <=16384 tokens" --passes 2 --batch-tokens 16384 --max-batch-rows 100000

step "fp16 features against fp32 (standard operators: the exact reference), same card"
for v in fp16-fused fp32-fused fp16-standard; do
  echo "$v vs fp32-standard:"
  cli compare-features "$(cat $W/embed-$v)" "$(cat $W/embed-fp32-standard)"
done
[ "$MODE" = full ] || exit 0

step "head on fp16 fused features: flex (CPU, $(nproc) cores) against burn-wgpu (Vulkan)"
for f in .gpu/vulkan/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
HEADSETS=(--set 'model.precision="fp16"' --set 'model.ops="fused"')
for run in "32 2" "1024 4" "8192 4"; do
  set -- $run
  for backend in cpu wgpu; do
    step "head: backend $backend, batch $1, $2 epochs"
    cli "${HEADSETS[@]}" run-pipeline --set "head.backend=\"$backend\"" \
      --set head.batch_size=$1 --set head.epochs=$2 \
      | grep -E "^head |epoch +[0-9]+:|^    accuracy"
  done
done
step "done"

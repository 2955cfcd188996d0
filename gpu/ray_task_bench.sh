#!/bin/bash
# Issue #13's device check: what one Ray task of the embed stage costs on a
# GPU. A Ray task is one `pipeline-cli embed-chunk` process (new process,
# CUDA context, ONNX Runtime session, then the chunk), so this times exactly
# that, without Ray (the GPU machine has none and no network): SST-2's
# 66,978 distinct inputs as 17 tasks of 4,096 rows run one after another (a
# worker with one GPU), and as one task; all-MiniLM-L6-v2's shape with random
# weights (speed does not depend on the values), fp16 and fp32.
# Call 2 of ../shared/gpu/README.md's protocol (call 1 unpacked .gpu/);
# .gpubin/ holds pipeline-cli.xz, config.json and tokenizer.json of
# all-MiniLM-L6-v2 (../shared/models) and chunks.tar.xz (gpu/ray_task_chunks.py).
set -uo pipefail
OUT=${OUT:-/tmp/ray-task-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/ray-task.log") 2>&1
source .gpu/unpack.sh .gpu >/dev/null
B=.gpubin
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" $B/pipeline-cli.xz $B/pipeline-cli
chmod +x $B/pipeline-cli
W=/tmp/ray-task && rm -rf $W && mkdir -p $W/minilm
python3 -c "import lzma,tarfile,sys; tarfile.open(fileobj=lzma.open(sys.argv[1])).extractall(sys.argv[2])" $B/chunks.tar.xz $W
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
date -u +"%Y-%m-%dT%H:%MZ"; nproc

python3 - "$B/config.json" "$W/minilm" <<'PY'
import sys, torch
from transformers import BertConfig, BertModel
torch.manual_seed(2021)
BertModel(BertConfig.from_json_file(sys.argv[1])).save_pretrained(sys.argv[2], safe_serialization=True)
PY
cp $B/config.json $B/tokenizer.json $W/minilm/

now() { echo $EPOCHREALTIME; }
since() { awk "BEGIN{printf \"%.3f\", $EPOCHREALTIME - $1}"; }
for precision in fp16 fp32; do
  cat > $W/$precision.toml <<TOML
[ingest]
csv = "$PWD/data/reviews.csv"
[model]
source = "dir:$W/minilm"
precision = "$precision"
TOML
  $B/pipeline-cli --config $W/$precision.toml --artifacts $W/art-$precision run-pipeline --until model | tail -2
  model=$W/art-$precision/model/model.onnx
  spec='{"pooling":"mean","device":"cuda","batch_tokens":null,"max_batch_rows":null,"threads":4}'
  echo "== $precision: 17 tasks of <= 4096 rows, one after another (each a new process)"
  t0=$(now)
  for c in $W/chunks/chunk-*.arrow; do
    s=$(now)
    $B/pipeline-cli embed-chunk --model $model --spec "$spec" < $c > $W/out.arrow || echo "FAILED $c"
    printf '  %s %s s (%d bytes out)\n' "$(basename $c)" "$(since $s)" "$(stat -c %s $W/out.arrow)"
  done
  printf '  all 17 tasks: %s s\n' "$(since $t0)"
  echo "== $precision: one task of all rows, twice"
  for i in 1 2; do
    s=$(now)
    $B/pipeline-cli embed-chunk --model $model --spec "$spec" < $W/chunks/all.arrow > $W/all-$precision.arrow || echo FAILED
    printf '  one task, all rows: %s s (%d bytes out)\n' "$(since $s)" "$(stat -c %s $W/all-$precision.arrow)"
  done
  echo "== $precision: an empty-ish task (the first chunk's first row): process + CUDA + session"
  python3 - $W/chunks/chunk-000.arrow $W/one.arrow <<'PY'
import sys
try:
    import pyarrow as pa
    t = pa.ipc.open_stream(open(sys.argv[1], "rb")).read_all().slice(0, 1)
    with pa.OSFile(sys.argv[2], "wb") as f, pa.ipc.new_stream(f, t.schema) as w:
        w.write_table(t)
except ImportError:
    import shutil; shutil.copy(sys.argv[1], sys.argv[2])
    print("(no pyarrow: a whole chunk instead)")
PY
  for i in 1 2 3; do
    s=$(now)
    $B/pipeline-cli embed-chunk --model $model --spec "$spec" < $W/one.arrow > /dev/null || echo FAILED
    printf '  one-row task: %s s\n' "$(since $s)"
  done
done
cp $W/fp16.toml "$OUT/" 2>/dev/null

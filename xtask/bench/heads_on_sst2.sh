#!/bin/bash
# The head-configuration comparison of BENCHMARKS.md: train on SST-2 train
# with each setting, score on the held-out UCI sentences. Run from the
# repository root; results share one artifacts folder (each embed runs once).
# Then: python3 xtask/bench/dedup_accuracy.py $A/.store  (SST-2 de-duplicated rows)
set -u
A=${A:-/tmp/heads-sst2}
CLI="cargo xtask --artifacts $A --set ingest.csv=\"$PWD/../shared/data/sst2_train.csv\""
UCI=../shared/data/uci_amazon_yelp.csv
run() {
  echo "=== $*"
  eval $CLI "$@" run-pipeline | grep -E "^[a-z]+ +(ran|restored)|accuracy|best validation"
  eval $CLI "$@" evaluate --csv $UCI | head -1
}
run --config tutorial.toml
run --config tutorial.toml --set 'encode.max_len=\"auto\"' --set encode.auto_percentile=100.0
run --set head.learning_rate=1e-3 --set 'embed.pooling=\"pooler\"'
run --set head.learning_rate=1e-3 --set 'embed.pooling=\"cls\"'
run --set head.learning_rate=1e-3 --set encode.max_len=17
run --set head.learning_rate=1e-3
run --set head.learning_rate=3e-4
run
run --set head.weight_decay=0.01
run --set head.epochs=20

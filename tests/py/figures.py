"""Oracle: the figures the README relies on, recomputed independently with
NumPy, scikit-learn, pyarrow and safetensors from the pipeline's artifacts.

usage:
  figures.py skew CSV OUT KEEP_NEGATIVES   CSV with only the first KEEP_NEGATIVES rows of label 0
  figures.py head ARTIFACTS                the head: balanced class weights, its val loss, test probabilities
  figures.py metrics PREDICTIONS_PARQUET   scikit-learn's metrics of (label, pred)
  figures.py compare A B                   relative error between two embed results, per split
  figures.py split_csv PARQUET OUT         an ingest split as a `sentence,label` CSV
Each prints one JSON object.
"""
import csv
import json
import sys

import numpy as np
import pyarrow.parquet as pq
from safetensors.numpy import load_file
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sklearn.utils.class_weight import compute_class_weight


def features(path):
    t = pq.read_table(path)
    x = np.array(t.column("features").to_pylist(), dtype=np.float64)
    return t.column("row_id").to_numpy(), t.column("label").to_numpy(), x


def skew(src, out, keep_negatives):
    with open(src, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    kept, negatives = [], 0
    for r in rows:
        if r["label"] == "0":
            negatives += 1
            if negatives > keep_negatives:
                continue
        kept.append(r)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["sentence", "label"])
        w.writeheader()
        w.writerows(kept)
    return {"rows": len(kept)}


def head(artifacts):
    _, train_y, _ = features(f"{artifacts}/embed/train.parquet")
    classes = np.arange(train_y.max() + 1)
    weights = compute_class_weight("balanced", classes=classes, y=train_y)
    w = load_file(f"{artifacts}/head/head.safetensors")

    def log_probs(x):
        hidden = np.maximum(x @ w["fc1.weight"].astype(np.float64) + w["fc1.bias"], 0.0)
        z = hidden @ w["fc2.weight"].astype(np.float64) + w["fc2.bias"]
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    _, val_y, val_x = features(f"{artifacts}/embed/val.parquet")
    lp = log_probs(val_x)
    nll = -lp[np.arange(len(val_y)), val_y]
    val_loss = float((weights[val_y] * nll).sum() / weights[val_y].sum())

    history = pq.read_table(f"{artifacts}/head/history.parquet")
    val_losses = history.column("val_loss").to_pylist()
    best_by_val_loss = int(np.argmin(val_losses)) + 1  # first minimum, 1-based

    test_ids, _, test_x = features(f"{artifacts}/embed/test.parquet")
    probs = np.exp(log_probs(test_x))
    preds = pq.read_table(f"{artifacts}/head/test_predictions.parquet")
    stored = dict(zip(preds.column("row_id").to_pylist(),
                      preds.column("probabilities").to_pylist()))
    stored_pred = dict(zip(preds.column("row_id").to_pylist(), preds.column("pred").to_pylist()))
    diff = max(float(np.abs(np.array(stored[r]) - p).max()) for r, p in zip(test_ids.tolist(), probs))
    agree = all(stored_pred[r] == int(p.argmax()) for r, p in zip(test_ids.tolist(), probs))
    return {
        "balanced_weights": weights.tolist(),
        "val_loss_of_saved_head": val_loss,
        "val_losses": val_losses,
        "best_epoch_by_val_loss": best_by_val_loss,
        "best_epoch_recorded": int(json.loads(
            history.schema.metadata[b"best_epoch"].decode()
        )) if b"best_epoch" in (history.schema.metadata or {}) else None,
        "test_probability_max_diff": diff,
        "test_preds_are_argmax": agree,
    }


def metrics(path):
    t = pq.read_table(path)
    y, p = t.column("label").to_numpy(), t.column("pred").to_numpy()
    labels = sorted(set(y.tolist()) | set(p.tolist()))
    prec, rec, f1, support = precision_recall_fscore_support(y, p, labels=labels, zero_division=0)
    out = {
        "accuracy": accuracy_score(y, p),
        "precision": prec.tolist(),
        "recall": rec.tolist(),
        "f1": f1.tolist(),
        "support": support.tolist(),
        "confusion": confusion_matrix(y, p, labels=labels).tolist(),
    }
    for avg in ["macro", "weighted"]:
        pa, ra, fa, _ = precision_recall_fscore_support(y, p, average=avg, zero_division=0)
        out.update({f"{avg}_precision": pa, f"{avg}_recall": ra, f"{avg}_f1": fa})
    return out


def compare(a, b):
    out = {}
    for split in ["train", "val", "test"]:
        ia, _, xa = features(f"{a}/{split}.parquet")
        ib, _, xb = features(f"{b}/{split}.parquet")
        xb = xb[np.argsort(ib)][np.searchsorted(np.sort(ib), ia)]
        d = ((xa - xb) ** 2).sum(axis=1)
        n = (xb ** 2).sum(axis=1)
        out[split] = {
            "rows": len(ia),
            "relative_error": float(np.sqrt(d.sum() / n.sum())),
            "worst_row_relative_error": float(np.sqrt(d / n).max()),
        }
    return out


def split_csv(parquet, out):
    t = pq.read_table(parquet)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sentence", "label"])
        w.writerows(zip(t.column("sentence").to_pylist(), t.column("label").to_pylist()))
    return {"rows": t.num_rows}


command, args = sys.argv[1], sys.argv[2:]
if command == "skew":
    args[2] = int(args[2])
print(json.dumps({"skew": skew, "head": head, "metrics": metrics, "compare": compare,
                  "split_csv": split_csv}[command](*args)))

"""Oracle for the audit stage, from its artifacts and the ingest/embed splits.

usage:
  audit_oracle.py cleanlab AUDIT_DIR
      cleanlab's find_label_issues(filter_by="confident_learning",
      return_indices_ranked_by="self_confidence") over audit/out_of_fold.parquet:
      {"row_ids": [...], "self_confidence": [...]} in cleanlab's order
  audit_oracle.py overlap ARTIFACTS MIN_WORDS COSINE
      overlap recomputed by brute force (Python substring search on the
      normalised text, NumPy cosines): {"rows": [[split, row_id, against, kind, cosine], ...]}
Each prints one JSON object.
"""
import json
import sys
import unicodedata

import numpy as np
import pyarrow.parquet as pq


def cleanlab_issues(audit_dir):
    from cleanlab.filter import find_label_issues

    t = pq.read_table(f"{audit_dir}/out_of_fold.parquet")
    labels = t.column("label").to_numpy()
    probs = np.array(t.column("probabilities").to_pylist(), dtype=np.float64)
    ranked = find_label_issues(
        labels,
        probs,
        filter_by="confident_learning",
        return_indices_ranked_by="self_confidence",
        n_jobs=1,
    )
    row_ids = t.column("row_id").to_numpy()
    return {
        "row_ids": [int(row_ids[i]) for i in ranked],
        "self_confidence": [float(probs[i, labels[i]]) for i in ranked],
    }


def tokens(text):
    """The audit's normalisation: case folded, words of letters/digits,
    every other non-space character a token of its own."""
    out, word = [], ""
    for c in text.lower():
        if c.isalnum():
            word += c
            continue
        if word:
            out.append(word)
            word = ""
        if not c.isspace():
            out.append(c)
    if word:
        out.append(word)
    return out


def overlap(artifacts, min_words, cosine):
    splits, feats = {}, {}
    for s in ["train", "val", "test"]:
        t = pq.read_table(f"{artifacts}/ingest/{s}.parquet")
        splits[s] = list(zip(t.column("row_id").to_pylist(), t.column("sentence").to_pylist()))
        x = np.array(pq.read_table(f"{artifacts}/embed/{s}.parquet").column("features").to_pylist(), dtype=np.float64)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        feats[s] = x / np.where(norms > 0, norms, 1)
    rows = []
    for held, earlier in [("val", "train"), ("test", "train"), ("test", "val")]:
        padded = [" " + " ".join(tokens(s)) + " " for _, s in splits[earlier]]
        words = [sum(any(c.isalnum() for c in w) for w in tokens(s)) for _, s in splits[earlier]]
        sims = feats[held] @ feats[earlier].T
        for i, (row_id, sentence) in enumerate(splits[held]):
            mine = tokens(sentence)
            p = " " + " ".join(mine) + " "
            kind = None
            if mine and p in padded:
                kind = "exact"
            elif mine and any(p in other for other in padded):
                kind = "inside"
            elif any(words[j] >= min_words and padded[j] in p for j in range(len(padded)) if padded[j].strip()):
                kind = "contains"
            elif sims[i].max() >= cosine:
                kind = "near_duplicate"
            if kind:
                rows.append([held, row_id, earlier, kind, float(sims[i].max())])
    return {"rows": rows}


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "cleanlab":
        print(json.dumps(cleanlab_issues(sys.argv[2])))
    elif cmd == "overlap":
        print(json.dumps(overlap(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))
    else:
        sys.exit(f"unknown command {cmd}")

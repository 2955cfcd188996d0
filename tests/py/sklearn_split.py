"""Oracle: the reference tutorial's split, by scikit-learn itself.

usage: sklearn_split.py CSV [--test-size 0.3] [--seed 2021]
Prints JSON {"train": [row_id...], "val": [...], "test": [...]} where row_id is
the 0-based data row of the CSV, in the order train_test_split returns them.
Labels are read as integers from the `label` column.
"""
import argparse
import csv
import json
import sys

import numpy as np
from sklearn.model_selection import train_test_split

ap = argparse.ArgumentParser()
ap.add_argument("csv")
ap.add_argument("--test-size", type=float, default=0.3)
ap.add_argument("--second-test-size", type=float, default=0.5)
ap.add_argument("--seed", type=int, default=2021)
ap.add_argument("--label-column", default="label")
args = ap.parse_args()

with open(args.csv, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
ids = np.arange(len(rows))
labels = np.array([int(r[args.label_column]) for r in rows])

# The tutorial, verbatim in structure.
train_ids, temp_ids, train_labels, temp_labels = train_test_split(
    ids, labels, random_state=args.seed, test_size=args.test_size, stratify=labels)
val_ids, test_ids, val_labels, test_labels = train_test_split(
    temp_ids, temp_labels, random_state=args.seed, test_size=args.second_test_size, stratify=temp_labels)

json.dump({"train": train_ids.tolist(), "val": val_ids.tolist(), "test": test_ids.tolist()}, sys.stdout)

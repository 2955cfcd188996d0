"""A client of the exported folder that knows nothing of the pipeline:
onnxruntime + tokenizers only. Scores the sentences of a CSV (column
`sentence`) and prints one JSON line per sentence: label and probabilities.
Usage: export_client.py EXPORT_DIR SENTENCES_CSV"""
import csv, json, sys

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

folder, sentences_csv = sys.argv[1], sys.argv[2]
tokenizer = Tokenizer.from_file(f"{folder}/tokenizer.json")
labels = json.load(open(f"{folder}/labels.json"))
session = ort.InferenceSession(f"{folder}/classifier.onnx", providers=["CPUExecutionProvider"])
with open(sentences_csv, newline="") as f:
    texts = [row["sentence"] for row in csv.DictReader(f)]
for start in range(0, len(texts), 16):
    # The tokenizer pads the batch and truncates to the pipeline's max_len itself.
    encodings = tokenizer.encode_batch(texts[start:start + 16])
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    (probabilities,) = session.run(["probabilities"], {"input_ids": ids, "attention_mask": mask})
    for p in probabilities:
        print(json.dumps({"label": labels[str(int(np.argmax(p)))], "probabilities": p.tolist()}))

"""A bert-base-uncased-shaped checkpoint with random (seeded) weights, for the
GPU benchmark: the GPU machine has PyTorch and transformers but no hub.
Usage: python3 make_bert_base.py OUT_DIR TOKENIZER_JSON"""
import shutil
import sys

import torch
from transformers import BertConfig, BertModel

out, tokenizer = sys.argv[1], sys.argv[2]
torch.manual_seed(2021)
model = BertModel(BertConfig())  # 12 layers, H=768, 12 heads, vocab 30522
model.save_pretrained(out, safe_serialization=True)
shutil.copy(tokenizer, f"{out}/tokenizer.json")
print(f"bert-base-shaped random checkpoint in {out}")

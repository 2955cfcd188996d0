"""Task inputs for gpu/ray_task_bench.sh: the distinct model inputs of an
encode result (train, val, test in that order, each input once, as the Ray
executor sends them), cut into `embed-chunk` inputs of CHUNK_ROWS rows, plus
one input holding them all. Arrow IPC streams with one `ids` list<uint32>
column (tables::task_wire).
Usage: python ray_task_chunks.py ENCODE_DIR OUT_DIR CHUNK_ROWS"""
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq

encode_dir, out_dir, chunk_rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen, rows = set(), []
for split in ("train", "val", "test"):
    table = pq.read_table(os.path.join(encode_dir, f"{split}.parquet"))
    ids = table.column("input_ids").to_pylist()
    mask = table.column("attention_mask").to_pylist()
    for row, m in zip(ids, mask):
        unpadded = tuple(row[: sum(m)])
        if unpadded not in seen:
            seen.add(unpadded)
            rows.append(list(unpadded))

schema = pa.schema([pa.field("ids", pa.list_(pa.field("item", pa.uint32(), nullable=False)), nullable=False)])


def write(path, part):
    table = pa.table({"ids": pa.array(part, type=schema.field("ids").type)}, schema=schema)
    with pa.OSFile(path, "wb") as f, pa.ipc.new_stream(f, schema) as writer:
        writer.write_table(table)


os.makedirs(out_dir, exist_ok=True)
for i in range(0, len(rows), chunk_rows):
    write(os.path.join(out_dir, f"chunk-{i // chunk_rows:03d}.arrow"), rows[i : i + chunk_rows])
write(os.path.join(out_dir, "all.arrow"), rows)
print(f"{len(rows)} distinct inputs, {sum(map(len, rows))} tokens, chunks of {chunk_rows}")

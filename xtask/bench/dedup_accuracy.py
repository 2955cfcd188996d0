"""Accuracy of every stored head on the SST-2 test rows that share no phrase
with the training split (neither inside a training sentence nor containing a
training phrase of >= 3 words). SST-2 train is phrases of the same sentences,
so only these rows are held out in-domain.
Usage: python3 dedup_accuracy.py ARTIFACTS/.store   (needs pyarrow)"""
import glob
import json
import sys

import pyarrow.parquet as pq

A = sys.argv[1]
ing=glob.glob(f'{A}/ingest/*/')
assert len(ing)==1, ing
train=pq.read_table(ing[0]+'train.parquet').to_pylist()
test=pq.read_table(ing[0]+'test.parquet').to_pylist()
norm=lambda s: ' '.join(s.lower().split())
trs=[norm(r['sentence']) for r in train]
trset=set(trs)
big='\n'.join(trs)
def leaky(s):
    s=norm(s)
    if s in big: return True   # test sentence inside a training sentence
    w=s.split()
    for i in range(len(w)):
        for j in range(i+1,len(w)+1):
            if j-i>=3 and ' '.join(w[i:j]) in trset: return True  # a training phrase of >=3 words inside it
    return False
clean={r['row_id'] for r in test if not leaky(r['sentence'])}
print(f'test rows {len(test)}, de-duplicated {len(clean)}')
# map each head entry to its config
def man(p): return json.load(open(p+'/manifest.json'))
embeds={}
for d in glob.glob(f'{A}/embed/*/'):
    m=man(d); enc=None
    embeds[m['outputs']['test.parquet']['digest']]=(m['params']['pooling'], m['inputs']['encode/test.parquet']['digest'])
encs={}
for d in glob.glob(f'{A}/encode/*/'):
    m=man(d); encs[m['outputs']['test.parquet']['digest']]=m['params']['max_len']
for d in sorted(glob.glob(f'{A}/head/*/')):
    m=man(d)
    pool,encd=embeds.get(m['inputs']['embed/test.parquet']['digest'],('?',None))
    ml=encs.get(encd,'?')
    p=pq.read_table(d+'test_predictions.parquet').to_pylist()
    sub=[r for r in p if r['row_id'] in clean]
    acc=sum(r['label']==r['pred'] for r in sub)/len(sub)
    accall=sum(r['label']==r['pred'] for r in p)/len(p)
    hp=m['params']
    print(f"v{m['version']} pooling={pool:6} max_len={str(ml):5} lr={hp['learning_rate']:<8} epochs={hp['epochs']} wd={hp['weight_decay']}: internal test {accall:.4f}, de-duplicated {acc:.4f} ({len(sub)} rows)")

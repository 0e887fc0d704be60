# The average-pooling baseline of configs/pml/digits_gsp.py (no zero-shot term: it needs
# GSP's attribute vectors); a Linear 64 -> 32 follows the pooling.
_base_ = ['./digits_gsp.py']

embedder = dict(pooler=dict(_delete_=True, type='AvgPooling'))
zero_shot = None

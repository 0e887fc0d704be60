# The average-pooling baseline of configs/pml/digits_clutter_gsp.py.
_base_ = ['./digits_clutter_gsp.py']

embedder = dict(pooler=dict(_delete_=True, type='AvgPooling'))
zero_shot = None

# VSE∞ on Flickr30K: BUTD region features + BERT, GPO (1K R@1 81.7 / 61.4, rSum 513.5).
_base_ = [
    './_base_/models/vse_region_bert.py',
    './_base_/datasets/vse_f30k_precomp.py',
    './_base_/schedules/vse_25e.py',
    './_base_/vse_runtime.py',
]

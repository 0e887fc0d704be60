# VSE∞ on COCO: BUTD region features + BERT (bert-base-uncased, local copy), GPO on both
# branches -- the paper's headline setting (5K R@1 58.3 / 42.4, rSum 434.3).
_base_ = [
    './_base_/models/vse_region_bert.py',
    './_base_/datasets/vse_coco_precomp.py',
    './_base_/schedules/vse_25e.py',
    './_base_/vse_runtime.py',
]

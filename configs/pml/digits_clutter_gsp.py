# configs/pml/digits_gsp.py on cluttered digits: a 20x20 digit at a random spot of a 48x48
# canvas with 6 random strokes (12x12 feature grid), the setting GSP's feature selection is
# made for (as configs/dml_gsp_digits_clutter.py on the mmengine side).
_base_ = ['./digits_gsp.py']

digits = dict(type='DigitsMetricDataset', size=48, digit_size=20, clutter_strokes=6)
train_dataset = dict(digits, split='train', pipeline=[dict(type='PackInputs')], _delete_=True)
val_dataset = dict(digits, split='test', pipeline=[dict(type='PackInputs')], _delete_=True)

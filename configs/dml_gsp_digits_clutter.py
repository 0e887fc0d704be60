# GSP on cluttered digits: each real digit (20x20) is pasted at a random spot of a 48x48
# canvas with 6 random strokes around it, so most of the 12x12 feature grid is background --
# the setting GSP's feature selection is for. Same model and schedule as dml_gsp_digits.py.
_base_ = ['./dml_gsp_digits.py']

digits = dict(type='DigitsMetricDataset', size=48, digit_size=20, clutter_strokes=6)
train_dataloader = dict(
    dataset=dict(digits, split='train', pipeline=[dict(type='PackInputs')], _delete_=True)
)
val_dataloader = dict(
    dataset=dict(digits, split='test', pipeline=[dict(type='PackInputs')], _delete_=True)
)
test_dataloader = val_dataloader

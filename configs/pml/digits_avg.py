# configs/dml_avg_digits.py (the average-pooling baseline) through PML's trainer and tester;
# only PML's own settings are added (as configs/pml/digits_gsp.py).
_base_ = ['../dml_avg_digits.py']

pml = dict(
    device='cpu',
    hooks=dict(patience=None, pooling_weights=True, num_images=5),
)

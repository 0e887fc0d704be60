# configs/dml_gsp_digits_clutter.py (cluttered digits) through PML's trainer and tester;
# only PML's own settings are added (as configs/pml/digits_gsp.py).
_base_ = ['../dml_gsp_digits_clutter.py']

pml = dict(
    device='cpu',
    hooks=dict(patience=None, pooling_weights=True, num_images=5),
)

# configs/dml_gsp_digits.py (GSP + zero-shot on scikit-learn's digits) trained through PML's
# trainer and tester: `python tools/train_pml.py configs/pml/digits_gsp.py`. The experiment
# (network, loss, data, optimiser, schedule) is the Runner config's; only PML's own settings
# are added here (docs/pml.md).
_base_ = ['../dml_gsp_digits.py']

pml = dict(
    device='cpu',
    hooks=dict(patience=None, pooling_weights=True, num_images=5),
)

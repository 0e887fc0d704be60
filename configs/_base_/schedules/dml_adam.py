# MLRC-style optimisation: Adam 1e-5, constant LR; the best checkpoint by validation MAP@R is
# kept (early stopping, see dml_runtime.py).
optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-5, weight_decay=1e-4))
param_scheduler = []
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()

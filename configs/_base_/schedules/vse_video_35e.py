# VSE∞'s video recipe (on HGR's code): 35 epochs, batch 128 (in the dataset files),
# LR 1e-4, x0.1 for the last 10 epochs; Adam, HGR's optimiser.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4))
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[25], gamma=0.1)]
train_cfg = dict(by_epoch=True, max_epochs=35, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128, enable=False)

# BUTD region features (36 x 2048) + BERT text, GPO on both branches, 1024-d joint space.
# `pretrained` must be a local copy of bert-base-uncased (no hub access); keep it equal to
# the dataset's `tokenizer.path`.
model = dict(
    type='VSERetriever',
    img_enc=dict(
        type='PrecompRegionEncoder', in_channels=2048, embed_dim=1024, pooling=dict(type='GPO')
    ),
    txt_enc=dict(
        type='BertTextEncoder',
        pretrained='data/bert-base-uncased',
        embed_dim=1024,
        pooling=dict(type='GPO'),
    ),
    head=dict(
        type='VSEHead', loss=dict(type='VSEContrastiveLoss', margin=0.2, max_violation=False)
    ),
)

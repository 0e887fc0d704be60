# Frame features -> FC + the region encoder's MLP branch -> pooler -> l2-norm (in the head);
# BiGRU text (300-d words) -> pooler. The configs pick the video pooler: GPO, or the
# average / max baselines. Keep `vocab_file` equal to the dataset tokenizer's.
model = dict(
    type='VSERetriever',
    img_enc=dict(
        type='PrecompRegionEncoder', in_channels=2048, embed_dim=1024, pooling=dict(type='GPO')
    ),
    txt_enc=dict(
        type='BiGRUTextEncoder',
        vocab_file='data/msrvtt/annotation/RET/word2int.json',
        word_dim=300,
        embed_dim=1024,
        pooling=dict(type='GPO'),
    ),
    head=dict(type='VSEHead', loss=dict(type='ContrastiveLoss', margin=0.2, max_violation=True)),
)

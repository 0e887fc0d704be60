# BUTD region features (36 x 2048) + BiGRU text (300-d words), GPO on both branches.
# The vocabulary comes from `tools/build_vocab.py` (threshold 4). The tools copy the
# top-level `vocab_file` into every `vocab_file` of the config (encoder and tokenizers);
# `--vocab FILE` replaces it, and it follows `--data-root`.
vocab_file = 'data/coco/vocab.json'
model = dict(
    type='VSERetriever',
    img_enc=dict(
        type='PrecompRegionEncoder', in_channels=2048, embed_dim=1024, pooling=dict(type='GPO')
    ),
    txt_enc=dict(
        type='BiGRUTextEncoder',
        vocab_file=vocab_file,
        word_dim=300,
        embed_dim=1024,
        pooling=dict(type='GPO'),
    ),
    head=dict(
        type='VSEHead', loss=dict(type='VSEContrastiveLoss', margin=0.2, max_violation=False)
    ),
)

"""datasets."""

from .precomputed_caption_dataset import PrecompCaptionDataset  # noqa: F401
from .text_tokenizers import HFTokenizer, VocabTokenizer, build_caption_tokenizer  # noqa: F401
from .vse_collate import vse_collate  # noqa: F401
from .vse_transforms import PackVSEInputs, RandomRegionDrop, RandomWordAugment  # noqa: F401

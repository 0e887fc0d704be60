"""Set encoders: precomputed regions, BiGRU and BERT-family text."""

from .bert_text_encoder import MINILM, BertTextEncoder  # noqa: F401
from .bigru_text_encoder import BiGRUTextEncoder  # noqa: F401
from .precomp_region_encoder import PrecompRegionEncoder  # noqa: F401

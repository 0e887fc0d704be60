"""Set encoders: precomputed regions, raw images (grid features), BiGRU and BERT-family text."""

from .backbone_grid_encoder import BackboneGridEncoder  # noqa: F401
from .bert_text_encoder import MINILM, BertTextEncoder  # noqa: F401
from .bigru_text_encoder import BiGRUTextEncoder  # noqa: F401
from .precomp_region_encoder import PrecompRegionEncoder  # noqa: F401

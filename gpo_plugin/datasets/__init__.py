"""Datasets, samplers, transforms and collation for VSE∞ and metric learning."""

from .caption_layout import CaptionLayoutError, read_caption_layout  # noqa: F401
from .cars196_metric_dataset import Cars196MetricDataset  # noqa: F401
from .cub_metric_dataset import CUBMetricDataset  # noqa: F401
from .digits_metric_dataset import DigitsMetricDataset  # noqa: F401
from .image_transforms import LoadVSEImage, RandomSideRatioCrop  # noqa: F401
from .inshop_metric_dataset import InShopMetricDataset  # noqa: F401
from .metric_learning_dataset import MetricLearningDataset, fold_classes  # noqa: F401
from .precomputed_caption_dataset import PrecompCaptionDataset  # noqa: F401
from .raw_image_caption_dataset import RawImageCaptionDataset  # noqa: F401
from .samplers import ClassDisjointSampler  # noqa: F401
from .sop_metric_dataset import SOPMetricDataset  # noqa: F401
from .text_tokenizers import (  # noqa: F401
    HFTokenizer,
    VocabTokenizer,
    build_caption_tokenizer,
    set_pipeline_tokenizer,
)
from .video_caption_dataset import EmptyCaptionsError, VideoCaptionDataset  # noqa: F401
from .video_frames import FeatureDimensionError, MissingVideoError, select_frames  # noqa: F401
from .vse_collate import vse_collate  # noqa: F401
from .vse_transforms import (  # noqa: F401
    GridDropParams,
    PackVSEInputs,
    RandomRegionDrop,
    RandomWordAugment,
    TokenizeCaption,
)

"""High-level entry points: what the tools run (train/test), the bundled demo data, and
:class:`VSEInferencer` for using a trained VSE model."""

from .demo_data import ensure_vse_demo_data, make_demo_data  # noqa: F401
from .grid_demo_data import ensure_grid_demo_data, make_grid_demo_data  # noqa: F401
from .inferencer import VSEInferencer  # noqa: F401
from .retrieval_index import EmbeddingIndex, chunked_topk  # noqa: F401
from .video_demo_data import ensure_video_demo_data, make_video_demo_data  # noqa: F401

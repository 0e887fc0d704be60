"""The bundled demo sets, written on demand from a seed: the VSE∞ precomputed-region set
(:mod:`.vse_data`), the video set in HGR's layout (:mod:`.video_data`), the grid-feature set of
scikit-image's photos (:mod:`.grid_data`) and a set in the In-Shop layout (:mod:`.inshop_data`).
Their words (objects, actions, caption templates, the photos' captions) are package data."""

from .grid_data import ensure_grid_demo_data, make_grid_demo_data  # noqa: F401
from .inshop_data import make_inshop_demo_data  # noqa: F401
from .video_data import ensure_video_demo_data, make_video_demo_data  # noqa: F401
from .vse_data import ensure_vse_demo_data, make_demo_data  # noqa: F401

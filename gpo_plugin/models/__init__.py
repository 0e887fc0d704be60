from . import encoders, heads, losses, necks  # noqa: F401  (importing registers the modules)

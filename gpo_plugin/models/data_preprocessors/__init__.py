"""Data preprocessors: batches from the loader -> device tensors the model takes."""

from .vse_data_preprocessor import VSE_INPUT_KEYS, VSEDataPreprocessor, check_vse_inputs  # noqa: F401

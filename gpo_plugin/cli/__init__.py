"""The command lines, as functions: ``tools/train.py`` (:mod:`.train`), ``tools/test.py``
(:mod:`.test`) and ``tools/analysis_tools/check_dataset.py`` (:mod:`.check_dataset`) are thin
wrappers around their ``main``; :mod:`.runner_config` holds the flags and config set-up that
train and test share."""

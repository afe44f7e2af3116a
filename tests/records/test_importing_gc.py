"""The import pipeline's process tuning: objects alive before staging are frozen out of the
garbage collector's passes while staging, and nothing else process-wide changes."""

import gc
import sys

from records.importing import pipeline


def test_import_process_tuning_freezes_while_staging_and_unfreezes_after():
    threshold = gc.get_threshold()
    switch = sys.getswitchinterval()
    with pipeline.import_process_tuning():
        assert gc.get_freeze_count() > 0
        with pipeline.import_process_tuning():  # a second staging in the same process
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() > 0  # the first one is still staging
        assert gc.get_threshold() == threshold
        assert sys.getswitchinterval() == switch
    assert gc.get_freeze_count() == 0


def test_import_process_tuning_unfreezes_on_error():
    try:
        with pipeline.import_process_tuning():
            raise RuntimeError("stop")
    except RuntimeError:
        pass
    assert gc.get_freeze_count() == 0

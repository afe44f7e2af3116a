"""The import pipeline's GC and thread-switch settings: changed while staging, restored after."""

import gc
import sys

from records.importing import pipeline


def test_import_process_tuning_restores_threshold_and_unfreezes():
    before = gc.get_threshold()
    switch = sys.getswitchinterval()
    with pipeline.import_process_tuning():
        assert gc.get_threshold() == pipeline.IMPORT_GC_THRESHOLD
        assert sys.getswitchinterval() == pipeline.IMPORT_SWITCH_INTERVAL
        assert gc.get_freeze_count() > 0
        with pipeline.import_process_tuning():  # a second staging in the same process
            assert gc.get_threshold() == pipeline.IMPORT_GC_THRESHOLD
        assert gc.get_threshold() == pipeline.IMPORT_GC_THRESHOLD
    assert gc.get_threshold() == before
    assert sys.getswitchinterval() == switch
    assert gc.get_freeze_count() == 0


def test_import_process_tuning_restores_on_error():
    before = gc.get_threshold()
    try:
        with pipeline.import_process_tuning():
            raise RuntimeError("stop")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0

"""The import pipeline's garbage-collector settings: changed while staging, restored after."""

import gc

from records.importing import pipeline


def test_few_collections_restores_threshold_and_unfreezes():
    before = gc.get_threshold()
    with pipeline._few_collections():
        assert gc.get_threshold() == pipeline.IMPORT_GC_THRESHOLD
        assert gc.get_freeze_count() > 0
        with pipeline._few_collections():  # a second staging in the same process
            assert gc.get_threshold() == pipeline.IMPORT_GC_THRESHOLD
        assert gc.get_threshold() == pipeline.IMPORT_GC_THRESHOLD
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_few_collections_restores_on_error():
    before = gc.get_threshold()
    try:
        with pipeline._few_collections():
            raise RuntimeError("stop")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0

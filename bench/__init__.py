"""`make bench`: DESIGN.md section 6's figures, ours against the common approach, in one run.

`python -m bench` runs the whole comparison (bench.suite); `python -m bench.import_memory`
measures one import through a real worker.
"""

"""Batches: build, approval, upload to the CDP Batch API, outcomes and the audit trail."""

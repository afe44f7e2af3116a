"""Services: every write to staged records goes through one of these modules.

Import from the module that holds a service (`records.services.review`, `.imports`, `.values`):
the package re-exports nothing, so the import engine can use `records.services.values`
without loading `records.services.imports`, which uses the engine.
"""

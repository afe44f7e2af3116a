"""HTTPS stand-in for the Sitecore CDP Batch API and its S3 upload, with fault injection.

Run it with `python -m cdpsandbox`; start it from tests with `cdpsandbox.process.run_sandbox`.
No Django imports anywhere in this package: it is the other side of the wire.
"""

__version__ = "1.0.0"

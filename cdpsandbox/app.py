"""The sandbox's shared state: stores, fault board, URL signer, processor and request log."""

from __future__ import annotations

import threading

from cdpsandbox.config import SandboxConfig
from cdpsandbox.faults import FaultBoard
from cdpsandbox.processing import Processor
from cdpsandbox.profiles import ProfileStore
from cdpsandbox.signing import UrlSigner
from cdpsandbox.store import BatchStore, RequestLog


class Sandbox:
    """One running sandbox; handlers reach every component through it."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.stopping = threading.Event()
        self.batches = BatchStore()
        self.profiles = ProfileStore()
        self.faults = FaultBoard(config.faults)
        self.signer = UrlSigner()
        self.requests = RequestLog()
        self.processor = Processor(
            config=config,
            batches=self.batches,
            profiles=self.profiles,
            faults=self.faults,
            stopping=self.stopping,
        )
        self.base_url = ""  # known once the socket is bound

    def reset(self) -> None:
        """Forget batches, profiles, faults and the request log (POST /_sandbox/reset)."""
        with self.batches.lock:
            # Processing threads still running compare generations and drop their result.
            self.processor.generation += 1
            self.batches.clear()
        self.profiles.clear()
        self.faults.clear()
        self.requests.clear()

    def signed_url(self, method: str, path: str) -> tuple[str, int]:
        """Absolute pre-signed URL for `path` and its expiry, with the current lifetime and base."""
        lifetime = self.faults.url_lifetime(self.config.url_lifetime)
        path_and_query, expires = self.signer.presign(method, path, lifetime)
        return self.faults.url_base(self.base_url) + path_and_query, expires

"""S3 SigV2-style query-string signing for the upload and log URLs (§1.3, §1.5 S-LOG example)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import quote

# The bucket name mimics the documented host pattern
# `sitecore-batch-service-<env>-eu-west-1` (S-UPLOAD, S-ALLOC); clients must treat it as opaque.
BUCKET_PREFIX = "/s3/sitecore-batch-service-sandbox-eu-west-1"


@dataclass(frozen=True)
class SignatureCheck:
    """Result of checking a pre-signed URL; `error` is an S3 error code or None when valid."""

    error: str | None = None
    message: str = ""
    expires: int | None = None
    string_to_sign: str = ""


class UrlSigner:
    """Signs `method + path + expires` with a secret that lives only as long as the process."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        # Looks like an AWS access key id; it is public in the URL, as in real S3 URLs.
        self.access_key_id = "AKIASANDBOX" + secrets.token_hex(5).upper()

    @staticmethod
    def string_to_sign(method: str, path: str, expires: int) -> str:
        """SigV2 puts the verb, the expiry and the resource in the signed string."""
        return f"{method}\n{expires}\n{path}"

    def _signature(self, method: str, path: str, expires: int) -> str:
        digest = hmac.new(
            self._secret, self.string_to_sign(method, path, expires).encode(), hashlib.sha1
        ).digest()
        return base64.b64encode(digest).decode()

    def presign(self, method: str, path: str, lifetime: int) -> tuple[str, int]:
        """Return (`path?query`, expires epoch seconds) for a URL valid `lifetime` seconds."""
        expires = int(time.time()) + lifetime
        query = (
            f"AWSAccessKeyId={quote(self.access_key_id, safe='')}"
            f"&Expires={expires}"
            f"&Signature={quote(self._signature(method, path, expires), safe='')}"
        )
        return f"{path}?{query}", expires

    def verify(self, method: str, path: str, query: dict[str, list[str]]) -> SignatureCheck:
        """Check query auth in S3's order: parameters, key id, expiry, signature."""
        key = query.get("AWSAccessKeyId", [""])[0]
        expires_text = query.get("Expires", [""])[0]
        signature = query.get("Signature", [""])[0]
        if not (key and expires_text and signature):
            return SignatureCheck(
                "AccessDenied",
                "Query-string authentication requires the Signature, Expires and "
                "AWSAccessKeyId parameters",
            )
        if not hmac.compare_digest(key, self.access_key_id):
            return SignatureCheck(
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        try:
            expires = int(expires_text)
        except ValueError:
            return SignatureCheck("AccessDenied", "Invalid date (should be seconds since epoch)")
        to_sign = self.string_to_sign(method, path, expires)
        if time.time() > expires:
            return SignatureCheck("AccessDenied", "Request has expired", expires, to_sign)
        if not hmac.compare_digest(signature, self._signature(method, path, expires)):
            return SignatureCheck(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you "
                "provided. Check your key and signing method.",
                expires,
                to_sign,
            )
        return SignatureCheck(None, "", expires, to_sign)

"""Every document the code and the docs point at is in the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".venv", ".git", "media", ".sandbox", "node_modules", "test-results", "staticfiles"}
TEXT = {".py", ".md", ".html", ".txt", ".toml"}
# A document named in prose or code (`docs/mapping.md`, or a bare name like cdp-batch-api.md);
# not a URL.
NAMED = re.compile(r"(?<![\w/.:-])((?:\.\./|[\w-]+/)*[\w-]+\.md)\b")


def _sources():
    for path in ROOT.rglob("*"):
        if path.suffix in TEXT and not SKIP & set(path.relative_to(ROOT).parts) and path.is_file():
            yield path


def test_every_named_document_exists():
    documents = {p.name for p in ROOT.rglob("*.md") if not SKIP & set(p.relative_to(ROOT).parts)}
    missing = []
    for path in _sources():
        for name in NAMED.findall(path.read_text(errors="replace")):
            found = (
                (ROOT / name).exists()
                or (path.parent / name).exists()
                or ("/" not in name and name in documents)
            )
            if not found:
                missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert len(documents) > 10  # the scan sees the docs
    assert missing == []

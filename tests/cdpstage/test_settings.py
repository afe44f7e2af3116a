"""The settings read only the environment, and .env.example lists every variable they read."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# env_str("NAME", …), env_int(…), env_bool(…), env_list(…), _env(…), os.environ.get("NAME", …)
# in the settings and in the database configuration they take the URLs from.
SOURCES = ("cdpstage/settings.py", "cdpstage/dbconfig.py")
READ = re.compile(r"""(?:env_\w+|_env|os\.environ\.get)\(\s*"([A-Z][A-Z0-9_]*)\"""")
# NAME=value, or "# NAME=" for a variable that is usually left unset.
LISTED = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def _read() -> set[str]:
    return {name for path in SOURCES for name in READ.findall((ROOT / path).read_text())}


def test_env_example_lists_every_variable_the_settings_read():
    read = _read()
    listed = set(LISTED.findall((ROOT / ".env.example").read_text()))
    assert len(read) > 30  # the pattern still finds the reads
    assert read - listed == set()


def test_env_example_lists_nothing_the_settings_do_not_read():
    read = _read()
    listed = set(LISTED.findall((ROOT / ".env.example").read_text()))
    # Read by libraries, not by our settings: boto3 and requests.
    by_libraries = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "REQUESTS_CA_BUNDLE"}
    assert listed - read - by_libraries == set()

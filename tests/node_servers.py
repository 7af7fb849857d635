"""MCP servers written for Node.js, installed from the npm registry for the tests.

`tests/npm/package.json` pins them and `tests/npm/package-lock.json` pins what they depend
on; `npm ci` installs exactly that into `tests/npm/node_modules/` (ignored by git) the first
time a test asks, and again whenever the lock file changes. In pytest,
`filesystem_server()` returns the command of the official filesystem reference server,
`@modelcontextprotocol/server-filesystem`; without npm it skips the test with a clear
message, but fails it when the environment variable `CI` or `POLICYLAYER_REQUIRE_NPM` is
set (.ci/run installs Node.js and npm): CI must run these tests, never skip them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["FILESYSTEM_VERSION", "NPM_DIR", "REQUIRED_BY", "filesystem_server"]

NPM_DIR = Path(__file__).resolve().parent / "npm"
REQUIRED_BY = ("CI", "POLICYLAYER_REQUIRE_NPM")  # environment variables that forbid a skip
FILESYSTEM_PACKAGE = "@modelcontextprotocol/server-filesystem"
FILESYSTEM_VERSION: str = json.loads((NPM_DIR / "package.json").read_text("utf-8"))["dependencies"][
    FILESYSTEM_PACKAGE
]
MISSING = (
    "npm is not installed (Node.js 18 or later with npm: apt-get install nodejs npm); "
    f"the proxy's end-to-end tests run {FILESYSTEM_PACKAGE} from the npm registry"
)
_STAMP = NPM_DIR / "node_modules" / ".policylayer-lock-sha256"


def _lock_digest() -> str:
    return hashlib.sha256((NPM_DIR / "package-lock.json").read_bytes()).hexdigest()


def install() -> Path:
    """`npm ci` in tests/npm unless what the lock file names is already there; the bin dir."""
    bin_dir = NPM_DIR / "node_modules" / ".bin"
    digest = _lock_digest()
    if _STAMP.is_file() and _STAMP.read_text("utf-8") == digest:
        return bin_dir
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError(MISSING)
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NPM_DIR, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"npm ci in {NPM_DIR} failed ({done.returncode}):\n{done.stderr}")
    _STAMP.write_text(digest, "utf-8")
    return bin_dir


def filesystem_server() -> list[str]:
    """The command that starts the filesystem server (add the allowed directories)."""
    import pytest  # noqa: PLC0415 - only the test helper needs pytest

    try:
        bin_dir = install()
    except FileNotFoundError:
        required = [name for name in REQUIRED_BY if os.environ.get(name)]
        if required:
            pytest.fail(f"{MISSING}; {required[0]} is set, so this is a failure, not a skip")
        pytest.skip(MISSING)
    node = shutil.which("node")
    script = bin_dir / "mcp-server-filesystem"
    if node is None or not script.exists():
        pytest.fail(f"npm ci installed no {script}, or node is missing from PATH")
    # Through node itself rather than the bin script's #! line, which names `node` by PATH.
    return [node, str(script.resolve())]

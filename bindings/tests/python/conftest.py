"""Shared fixtures: the generated `outpost` module, a fleet CA, and nodes on loopback.

The generated bindings are looked up in $OUTPOST_PYTHON_BINDINGS, by default
bindings/generated/python (written by bindings/generate.sh).
"""

import os
import pathlib
import sys
import threading

import pytest

HERE = pathlib.Path(__file__).resolve().parent
BINDINGS = pathlib.Path(
    os.environ.get("OUTPOST_PYTHON_BINDINGS", HERE.parent.parent / "generated" / "python")
)
if not (BINDINGS / "outpost.py").exists():
    raise RuntimeError(
        f"no generated Python bindings in {BINDINGS}; run bindings/generate.sh first"
    )
sys.path.insert(0, str(BINDINGS))

import outpost  # noqa: E402  (after the path is set)

SITE = "paris-11"
TIMEOUT = 10.0  # seconds for anything that crosses the loopback network


@pytest.fixture(scope="session")
def ca():
    return outpost.FleetCa.generate("test-fleet")


@pytest.fixture
def open_node(tmp_path, ca):
    """Opens nodes of the test site on loopback; closes them all at the end."""
    nodes = []

    def _open(peer, cert_role, peers=(), data_dir=None, **kwargs):
        config = outpost.NodeConfig(
            data_dir=str(data_dir or tmp_path / peer),
            certificate=ca.issue(SITE, peer, cert_role),
            listen="127.0.0.1:0",
            peers=list(peers),
            **kwargs,
        )
        node = outpost.Outpost.open_blocking(config)
        nodes.append(node)
        return node

    yield _open
    for node in nodes:
        node.shutdown_blocking()


class Recorder(outpost.NodeListener):
    """A NodeListener that records what it is told and lets tests wait for it."""

    def __init__(self):
        self.cond = threading.Condition()
        self.changes = []
        self.connected = []
        self.disconnected = []
        self.refused = []
        self.threads = set()

    def _record(self, into, item):
        with self.cond:
            into.append(item)
            self.threads.add(threading.get_ident())
            self.cond.notify_all()

    def on_change(self, event):
        self._record(self.changes, event)

    def on_peer_connected(self, peer):
        self._record(self.connected, peer)

    def on_peer_disconnected(self, peer):
        self._record(self.disconnected, peer)

    def on_change_refused(self, refused):
        self._record(self.refused, refused)

    def wait_for(self, predicate, what, timeout=TIMEOUT):
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self), timeout):
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; "
                    f"changes={self.changes} connected={self.connected} "
                    f"disconnected={self.disconnected} refused={self.refused}"
                )


@pytest.fixture
def recorder():
    return Recorder()

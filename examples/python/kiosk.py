"""A self-service kiosk on outpost, in Python: shows the menu, takes an order, counts
stock, and shows an "offline / N unsynced" badge. Copy what you need.

Run with a provisioned certificate directory (cert.pem, key.pem, ca.pem) and the POS
address:    python kiosk.py CERT_DIR DATA_DIR POS_IP:PORT
or with no arguments for a demo: a throwaway fleet, with a POS on loopback.
The generated `outpost` module (bindings/generate.sh) and liboutpost_ffi must be on the
Python path, e.g. PYTHONPATH=bindings/generated/python.
"""

import asyncio
import json
import sys
import tempfile
import time

import outpost


class KioskListener(outpost.NodeListener):
    """Called on outpost's listener thread: hand events to the UI thread from here."""

    def __init__(self, node):
        self.node = node

    def on_change(self, event):
        if event.doc == "menu":
            show_menu(self.node)

    def on_peer_connected(self, peer):
        print(f"online: {peer.peer} ({peer.role})")

    def on_peer_disconnected(self, peer):
        print(f"lost {peer.peer}")

    def on_change_refused(self, refused):
        print("refused:", refused.reason)


def show_menu(node):
    try:
        menu = json.loads(node.get_blocking("menu", "/items") or "{}")
    except outpost.OutpostError.UnknownDocument:
        menu = {}  # nothing synced yet: show "loading" until on_change fires
    for sku, item in menu.items():
        print(f"menu: {sku}: {item.get('name')} {item.get('price', 0) / 100:.2f}")


def main(args):
    demo = not args
    data_dir = args[1] if len(args) > 1 else tempfile.mkdtemp(prefix="kiosk-")
    pos = None
    if demo:
        # The demo's POS, which owns the menu. A real kiosk dials the counter POS instead.
        ca = outpost.FleetCa.generate("demo")
        pos = outpost.Outpost.open_blocking(outpost.NodeConfig(
            data_dir=f"{data_dir}/pos",
            certificate=ca.issue("demo-site", "pos-1", "pos"),
            listen="127.0.0.1:0",
        ))
        pos.put_blocking("menu", "/items/burger", json.dumps({"name": "Burger", "price": 950}))
        certificate = ca.issue("demo-site", "kiosk-1", "kiosk")
    else:
        certificate = outpost.load_device_certificate(args[0])

    node = outpost.Outpost.open_blocking(outpost.NodeConfig(
        data_dir=f"{data_dir}/kiosk",
        certificate=certificate,
        role="kiosk",
        listen="127.0.0.1:0" if demo else "0.0.0.0:7733",
        peers=[pos.local_address() if demo else args[2]],
    ))
    subscription = node.subscribe(KioskListener(node), doc="menu")
    asyncio.run(node.wait_for_peer("pos-1", 5000))  # the counter POS's device id
    show_menu(node)

    # An order is one change, keyed by an id that no other device can pick, in the day's
    # partition under /orders (the README's layout: one item per order in every feed).
    order_id = f"kiosk-1-{int(time.time() * 1000)}"
    day = "orders/" + time.strftime("%Y-%m-%d", time.gmtime())
    node.transact_blocking(day, [
        outpost.TxOp.PUT(path=f"/orders/{order_id}", json='{"status": "new", "items": []}'),
        outpost.TxOp.PUSH(path=f"/orders/{order_id}/items", json='{"sku": "burger", "qty": 1}'),
    ])
    # Stock is a counter: two kiosks selling the last burger offline both count.
    node.increment_blocking("stock", "/burger", -1)

    try:
        node.put_int_blocking("menu", "/items/burger/price", 1)
    except outpost.OutpostError.NotPermitted as e:
        print("kiosks do not edit the menu:", e.reason)

    status = node.status_blocking()
    badge = "online" if status.online else "offline"
    print(f"badge: {badge}, {status.unsynced_changes} unsynced")

    subscription.cancel()
    node.shutdown_blocking()
    if pos:
        pos.shutdown_blocking()


if __name__ == "__main__":
    main(sys.argv[1:])

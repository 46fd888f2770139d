"""Pairing a screen with a QR code: the token a POS app issues (pair_screen_blocking) works at
the device's wss port for what its role may read, and stops working once revoked."""

import json
import socket
import ssl
import time

import pytest

import outpost
from conftest import SITE, TIMEOUT

DAY = "orders/2026-12-07"


def https_get(address, path, ca_pem, token=None):
    """GET over TLS to `address`, checking the device's certificate against the fleet CA
    under the name it carries (`outpost`), as a managed screen does."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cadata=ca_pem)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = f"GET {path} HTTP/1.1\r\nHost: outpost\r\n{auth}Connection: close\r\n\r\n"
    data = b""
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="outpost") as tls:
            tls.sendall(request.encode())
            while chunk := tls.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_a_paired_screen_token_works_at_the_device_until_revoked(open_node, ca):
    ca_pem = ca.issue(SITE, "anyone", "pos").ca_pem()
    pos = open_node("pos-1", "pos", ws_listen="127.0.0.1:0")
    pos.put_blocking(DAY, "/orders/P1-001", json.dumps({"total": 950}))
    address = pos.web_address()
    port = address.rsplit(":", 1)[1]

    started = time.monotonic()
    pairing = pos.pair_screen_blocking("kds", "kitchen-screen-1", 3600, host="outpost")
    assert (pairing.role, pairing.name) == ("kds", "kitchen-screen-1")
    assert pairing.url.startswith(f"https://outpost:{port}/kds/#token={pairing.token}&")
    assert pairing.qr_payload == pairing.url
    assert pairing.ws_url == f"wss://outpost:{port}/"
    assert abs(pairing.expires_unix - (time.time() + 3600)) < 120

    # The page the QR code opens, and the document id it asks for with the token.
    status, page = https_get(address, "/kds/", ca_pem)
    assert status == 200 and b"Kitchen display" in page
    status, body = https_get(address, f"/v1/documents?name={DAY}", ca_pem, pairing.token)
    assert status == 200, body
    listed = json.loads(body)
    assert listed["name"] == DAY and listed["exists"] is True
    assert listed["url"] == "automerge:" + listed["documentId"]
    print(f"pair + TLS + listing: {time.monotonic() - started:.3f} s")

    # What the role may not read, and a token that is not the device's: refused.
    assert https_get(address, "/v1/documents?name=health", ca_pem, pairing.token)[0] == 403
    forged = pairing.token[:-4] + ("0000" if not pairing.token.endswith("0000") else "1111")
    assert https_get(address, "/v1/documents", ca_pem, forged)[0] == 401

    # A guest (a customer's phone) reads the menu, not the orders.
    guest = pos.pair_screen_blocking("guest", "guest-7", 600, host="outpost")
    assert https_get(address, "/v1/documents?name=menu", ca_pem, guest.token)[0] == 200
    assert https_get(address, f"/v1/documents?name={DAY}", ca_pem, guest.token)[0] == 403

    # A POS may not vouch for a web client acting as a POS.
    with pytest.raises(outpost.OutpostError.NotPermitted):
        pos.pair_screen_blocking("pos", "fake-till", 600)

    # Revoked: refused within a second or so.
    pos.revoke_screen_blocking(pairing.token_id)
    deadline = time.monotonic() + TIMEOUT
    while https_get(address, "/v1/documents", ca_pem, pairing.token)[0] != 401:
        assert time.monotonic() < deadline, "the revoked token still works"
        time.sleep(0.1)


def test_pairing_needs_a_web_listener(open_node):
    pos = open_node("pos-2", "pos")
    assert pos.web_address() is None
    with pytest.raises(outpost.OutpostError.InvalidConfig):
        pos.pair_screen_blocking("kds", "kitchen-screen-1", 3600)

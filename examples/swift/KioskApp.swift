// A self-service kiosk on outpost, in Swift (iOS / macOS): shows the menu, takes an
// order, counts stock, and shows an "offline / N unsynced" badge. Copy what you need.
//
// Build: add Outpost.swift, OutpostFFI.h and OutpostFFI.modulemap (bindings/generate.sh)
// and liboutpost_ffi (or the XCFramework, see bindings/README.md) to your target.

import Foundation
import Outpost

/// Called on outpost's own listener thread: hop to the main queue before touching the UI.
final class KioskListener: NodeListener {
    let onMenuChanged: @Sendable () -> Void

    init(onMenuChanged: @escaping @Sendable () -> Void) {
        self.onMenuChanged = onMenuChanged
    }

    func onChange(event: ChangeEvent) {
        if event.doc == "menu" { DispatchQueue.main.async(execute: onMenuChanged) }
    }
    func onPeerConnected(peer: PeerIdentity) { print("online: \(peer.peer) (\(peer.role))") }
    func onPeerDisconnected(peer: PeerIdentity) { print("lost \(peer.peer)") }
    func onChangeRefused(refused: RefusedChange) { print("refused: \(refused.reason)") }
}

@main
struct KioskApp {
    static func main() async throws {
        let support = FileManager.default.urls(for: .applicationSupportDirectory, in: .userDomainMask)[0]
        // Provisioned once per device: cert.pem, key.pem and ca.pem of this kiosk.
        let certificate = try loadDeviceCertificate(dir: support.appendingPathComponent("outpost-cert").path)
        let node = try await Outpost.open(config: NodeConfig(
            dataDir: support.appendingPathComponent("outpost").path,
            certificate: certificate,
            role: "kiosk",
            peers: ["192.168.1.20:7733"],  // the counter POS; more are found by discovery
            discovery: true
        ))

        let subscription = try node.subscribe(listener: KioskListener {
            let price = (try? node.getIntBlocking(doc: "menu", path: "/items/burger/price")) ?? nil
            print("menu changed, burger now \(price.map(String.init) ?? "-")")
        }, doc: "menu")

        // An order: one change, keyed by an id no other device can pick, in the day's
        // partition under /orders (the README's layout: one item per order in every feed).
        let orderId = "kiosk-1-\(Int(Date().timeIntervalSince1970 * 1000))"
        let dayFormat = ISO8601DateFormatter()
        dayFormat.formatOptions = [.withFullDate]
        let day = "orders/\(dayFormat.string(from: Date()))"
        try await node.transact(doc: day, ops: [
            .put(path: "/orders/\(orderId)", json: #"{"status": "new", "items": []}"#),
            .push(path: "/orders/\(orderId)/items", json: #"{"sku": "burger", "qty": 1}"#),
        ])
        // Stock is a counter: two kiosks selling the last burger offline both count.
        try await node.increment(doc: "stock", path: "/burger", delta: -1)

        do {
            try await node.putInt(doc: "menu", path: "/items/burger/price", value: 1)
        } catch OutpostError.NotPermitted(let message, _, _, _, _) {
            print("kiosks do not edit the menu: \(message)")
        }

        let status = try await node.status()
        print(status.online ? "online, \(status.unsyncedChanges) unsynced" : "offline, \(status.unsyncedChanges) unsynced")

        subscription.cancel()
        try await node.shutdown()
    }
}

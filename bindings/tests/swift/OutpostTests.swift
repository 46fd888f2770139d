// The Swift scenario of outpost-ffi, for a machine with a Swift toolchain (macOS, or Linux
// with swift): two nodes on loopback, a write on one seen by the other's listener, and bad
// input raising the right OutpostError. On the CI machines, which have no Swift, the
// bindings/tests/swift/check_swift.py checks parse it and match its calls against the
// generated API instead.
//
// To run: put Outpost.swift, OutpostFFI.h and OutpostFFI.modulemap from
// bindings/generated/swift into a SwiftPM target named `Outpost` linked with
// liboutpost_ffi, and this file into its test target.

import Foundation
import XCTest

@testable import Outpost

final class Recorder: NodeListener, @unchecked Sendable {
    private let lock = NSCondition()
    private(set) var changes: [ChangeEvent] = []
    private(set) var connected: [PeerIdentity] = []
    private(set) var refused: [RefusedChange] = []

    func onChange(event: ChangeEvent) { record { self.changes.append(event) } }
    func onPeerConnected(peer: PeerIdentity) { record { self.connected.append(peer) } }
    func onPeerDisconnected(peer: PeerIdentity) {}
    func onChangeRefused(refused: RefusedChange) { record { self.refused.append(refused) } }

    private func record(_ update: () -> Void) {
        lock.lock()
        update()
        lock.broadcast()
        lock.unlock()
    }

    func wait(for what: String, timeout: TimeInterval = 10, _ done: (Recorder) -> Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        lock.lock()
        defer { lock.unlock() }
        while !done(self) {
            if !lock.wait(until: deadline) {
                XCTFail("timed out waiting for \(what)")
                return
            }
        }
    }
}

final class OutpostTests: XCTestCase {
    let site = "paris-11"
    var dir: URL!
    var ca: FleetCa!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        ca = try FleetCa.generate(fleetName: "test-fleet")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func open(_ peer: String, _ role: String, peers: [String] = [], expecting: String? = nil) throws -> Outpost {
        let config = NodeConfig(
            dataDir: dir.appendingPathComponent(peer).path,
            certificate: try ca.issue(site: site, peer: peer, role: role),
            role: expecting,
            listen: "127.0.0.1:0",
            peers: peers
        )
        return try Outpost.openBlocking(config: config)
    }

    func testWriteOnOneNodeIsSeenOnTheOther() async throws {
        let kiosk = try open("kiosk-1", "kiosk", expecting: "kiosk")
        let events = Recorder()
        let subscription = try kiosk.subscribe(listener: events, doc: "menu")
        let pos = try open("pos-1", "pos", peers: [kiosk.localAddress()!])

        events.wait(for: "pos-1 connected") { $0.connected.contains { $0.peer == "pos-1" } }
        try pos.putBlocking(doc: "menu", path: "/items/burger", json: #"{"name": "Burger", "price": 950}"#)
        events.wait(for: "the menu change") { $0.changes.contains { $0.origin == .remote(peer: "pos-1") } }
        XCTAssertEqual(try kiosk.getIntBlocking(doc: "menu", path: "/items/burger/price"), 950)
        XCTAssertEqual(try kiosk.getString(doc: "menu", path: "/items/burger/name"), "Burger")
        let connected = try await kiosk.waitForPeer(peer: "pos-1", timeoutMs: 5000)
        XCTAssertTrue(connected)
        XCTAssertTrue(try pos.statusBlocking().online)

        subscription.cancel()
        try await kiosk.shutdown()
        try await pos.shutdown()
    }

    func testBadInputRaisesTheRightError() async throws {
        let kiosk = try open("kiosk-2", "kiosk")
        XCTAssertThrowsError(try kiosk.putBlocking(doc: "orders", path: "o-1", json: "1")) { error in
            guard case OutpostError.InvalidPath = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try kiosk.putIntBlocking(doc: "menu", path: "/items/burger/price", value: 1)) { error in
            guard case OutpostError.NotPermitted(let message, let doc, _, _, let retryable) = error, doc == "menu", !retryable else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("kiosk"))
        }
        XCTAssertThrowsError(try kiosk.putBlocking(doc: "orders", path: "/o-1", json: "{nope")) { error in
            guard case OutpostError.InvalidJson = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try open("pos-9", "pos", expecting: "kiosk")) { error in
            guard case OutpostError.InvalidConfig = error else { return XCTFail("\(error)") }
        }
        try await kiosk.shutdown()
        XCTAssertThrowsError(try kiosk.getBlocking(doc: "orders", path: "/o-1")) { error in
            guard case OutpostError.ShutDown = error else { return XCTFail("\(error)") }
        }
    }

    struct Order: Codable, Equatable {
        let status: String
        let placedAt: Int
        let total: Int
    }

    func testStreamsTypedValuesAndQueries() async throws {
        let kiosk = try open("kiosk-5", "kiosk")
        let pos = try open("pos-5", "pos", peers: [kiosk.localAddress()!])
        let day = "orders/2026-12-01"

        // A document not synced yet reads as nil; then each new value, typed.
        var values = kiosk.values(Order.self, doc: day, path: "/orders/K5-001").makeAsyncIterator()
        let first = try await values.next()
        XCTAssertEqual(first, .some(nil))
        let missing = try await kiosk.read(Order.self, doc: day, path: "/orders/K5-001")
        XCTAssertNil(missing)
        try await kiosk.write(Order(status: "new", placedAt: 30, total: 950), doc: day, path: "/orders/K5-001")
        let second = try await values.next()
        XCTAssertEqual(second, .some(Order(status: "new", placedAt: 30, total: 950)))

        // Today's new orders, sorted by time, as a list that updates itself.
        let query = Query(
            collection: "/orders",
            filters: [QueryFilter(path: "/status", equalsJson: #""new""#)],
            sortBy: "/placedAt",
            limit: 10
        )
        var lists = kiosk.results(Order.self, doc: day, query: query).makeAsyncIterator()
        _ = try await lists.next()
        try await kiosk.write(Order(status: "new", placedAt: 10, total: 450), doc: day, path: "/orders/K5-002")
        var list = try await lists.next() ?? []
        while list.count < 2 { list = try await lists.next() ?? [] }
        XCTAssertEqual(list.map(\.placedAt), [10, 30])

        // Status as a stream instead of polling; times as Dates.
        for try await status in pos.statusUpdates() where status.online {
            XCTAssertEqual(status.connectedPeers.map(\.peer), ["kiosk-5"])
            break
        }
        let connected = try await kiosk.waitForPeer(peer: "pos-5", timeout: 5)
        XCTAssertTrue(connected)
        let synced = try await kiosk.status().peers.flatMap(\.documents).compactMap(\.lastSync)
        XCTAssertFalse(synced.isEmpty)

        // The key never shows in a description.
        let cert = try ca.issue(site: site, peer: "kiosk-6", role: "kiosk")
        XCTAssertFalse(String(describing: cert).contains("PRIVATE KEY"))
        XCTAssertTrue(cert.keyPem().contains("PRIVATE KEY"))
        let again = try DeviceCertificate.fromPem(certPem: cert.certPem(), keyPem: cert.keyPem(), caPem: cert.caPem())
        XCTAssertEqual(again.identity().peer, "kiosk-6")

        try await kiosk.shutdown()
        try await pos.shutdown()
    }

    func testAStreamEndsItsWatchWhenTheIterationEnds() async throws {
        let kiosk = try open("kiosk-7", "kiosk")
        do {
            var values = kiosk.jsonValues(doc: "menu").makeAsyncIterator()
            _ = try await values.next()
            XCTAssertEqual(kiosk.liveTasks(), 1)
        }
        // The iterator and its stream are gone: onTermination cancelled the watch.
        for _ in 0..<100 where kiosk.liveTasks() != 0 {
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        XCTAssertEqual(kiosk.liveTasks(), 0)
        try await kiosk.shutdown()
    }
}

// Hand-written Swift layer over the generated bindings (Outpost.swift): AsyncStreams for live
// values, status and queries, Codable access, Date and TimeInterval instead of milliseconds.
// Ship it in the same target as Outpost.swift (Package.swift does).
import Foundation

extension Outpost {
    /// The JSON at `path` of `doc` now, then each time it changes; `nil` while the document has
    /// not synced here. Conflated (only the newest value waits). Ending the iteration, or
    /// dropping the stream, ends the watch in Rust.
    public func jsonValues(doc: String, path: String = "") -> AsyncThrowingStream<String?, Error> {
        let watch: ValueWatch
        do {
            watch = try self.watch(doc: doc, path: path)
        } catch {
            return AsyncThrowingStream { continuation in continuation.finish(throwing: error) }
        }
        return AsyncThrowingStream(bufferingPolicy: .bufferingNewest(1)) { continuation in
            let task = Task {
                do {
                    while let snapshot = try await watch.next() {
                        continuation.yield(snapshot.json)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in
                watch.cancel()
                task.cancel()
            }
        }
    }

    /// `jsonValues` decoded as `T` with `decoder`.
    public func values<T: Decodable>(
        _ type: T.Type, doc: String, path: String = "", decoder: JSONDecoder = JSONDecoder()
    ) -> AsyncThrowingStream<T?, Error> {
        let json = jsonValues(doc: doc, path: path)
        return AsyncThrowingStream(bufferingPolicy: .bufferingNewest(1)) { continuation in
            let task = Task {
                do {
                    for try await text in json {
                        continuation.yield(try text.map { try decoder.decode(type, from: Data($0.utf8)) })
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// The sync status now, then each time it changes (instead of polling `status()`).
    public func statusUpdates() -> AsyncThrowingStream<SyncStatus, Error> {
        let watch: StatusWatch
        do {
            watch = try self.watchStatus()
        } catch {
            return AsyncThrowingStream { continuation in continuation.finish(throwing: error) }
        }
        return AsyncThrowingStream(bufferingPolicy: .bufferingNewest(1)) { continuation in
            let task = Task {
                do {
                    while let status = try await watch.next() {
                        continuation.yield(status)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in
                watch.cancel()
                task.cancel()
            }
        }
    }

    /// The items of `query` over `doc` decoded as `T`, now and each time the result changes;
    /// evaluated in Rust from the changed paths only.
    public func results<T: Decodable>(
        _ type: T.Type, doc: String, query: Query, decoder: JSONDecoder = JSONDecoder()
    ) -> AsyncThrowingStream<[T], Error> {
        let watch: QueryWatch
        do {
            watch = try self.watchQuery(doc: doc, query: query)
        } catch {
            return AsyncThrowingStream { continuation in continuation.finish(throwing: error) }
        }
        return AsyncThrowingStream(bufferingPolicy: .bufferingNewest(1)) { continuation in
            let task = Task {
                do {
                    while let result = try await watch.next() {
                        continuation.yield(try result.items.map { try decoder.decode(type, from: Data($0.json.utf8)) })
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in
                watch.cancel()
                task.cancel()
            }
        }
    }

    /// The value at `path` of `doc` decoded as `T`; `nil` if the document has not synced here yet.
    public func read<T: Decodable>(
        _ type: T.Type, doc: String, path: String = "", decoder: JSONDecoder = JSONDecoder()
    ) async throws -> T? {
        do {
            guard let json = try await self.get(doc: doc, path: path) else { return nil }
            return try decoder.decode(type, from: Data(json.utf8))
        } catch OutpostError.UnknownDocument {
            return nil
        }
    }

    /// Writes `value` at `path` of `doc` as JSON; returns once stored (flushed with durable writes).
    public func write<T: Encodable>(
        _ value: T, doc: String, path: String, encoder: JSONEncoder = JSONEncoder()
    ) async throws {
        let json = String(decoding: try encoder.encode(value), as: UTF8.self)
        try await self.put(doc: doc, path: path, json: json)
    }

    /// Waits until device `peer` is connected, at most `timeout` seconds.
    public func waitForPeer(peer: String, timeout: TimeInterval) async throws -> Bool {
        let ms = UInt32(max(0, min(timeout * 1000, Double(UInt32.max))))
        return try await self.waitForPeer(peer: peer, timeoutMs: ms)
    }
}

extension DocumentSyncStatus {
    /// When both sides last had the same state.
    public var lastSync: Date? {
        lastSyncMs.map { Date(timeIntervalSince1970: TimeInterval($0) / 1000) }
    }

    /// Since when the peer has lacked some changes.
    public var unsyncedSince: Date? {
        unsyncedSinceMs.map { Date(timeIntervalSince1970: TimeInterval($0) / 1000) }
    }
}

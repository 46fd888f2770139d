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
                        continuation.yield(try text.map { try decodeOrThrow(type, $0, decoder: decoder, doc: doc, path: path) })
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

    /// Every event of the node from now on (`NodeEvent`: `.peerConnected`, `.changeRefused`,
    /// `.revoked`, `.connectionRefused`, `.inSync`, `.protocolError`, `.storageFailed`, ...), in
    /// order and not conflated; a `switch` over it is exhaustive. Ending the iteration ends the
    /// stream in Rust.
    public func eventUpdates() -> AsyncThrowingStream<NodeEvent, Error> {
        let stream: EventStream
        do {
            stream = try self.events()
        } catch {
            return AsyncThrowingStream { continuation in continuation.finish(throwing: error) }
        }
        return AsyncThrowingStream(bufferingPolicy: .unbounded) { continuation in
            let task = Task {
                do {
                    while let event = try await stream.next() {
                        continuation.yield(event)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in
                stream.cancel()
                task.cancel()
            }
        }
    }

    /// Waits until document `name` exists here, at most `timeout` seconds: `true` once it does,
    /// `false` if it has not synced yet.
    public func awaitDocument(name: String, timeout: TimeInterval) async throws -> Bool {
        let ms = UInt32(max(0, min(timeout * 1000, Double(UInt32.max))))
        return try await self.awaitDocument(name: name, timeoutMs: ms)
    }

    /// The rows of `query` over `doc` with their keys, now and each time the result changes, with
    /// the `diff` from the previous update (for `UITableView`/`UICollectionView` batch updates);
    /// an item that does not decode is a row with an `OutpostError.InvalidJson` error and the
    /// stream goes on. Not conflated here: each diff follows the previous one.
    public func queryUpdates<T: Decodable>(
        _ type: T.Type, doc: String, query: Query, decoder: JSONDecoder = JSONDecoder()
    ) -> AsyncThrowingStream<QueryUpdate<T>, Error> {
        let watch: QueryWatch
        do {
            watch = try self.watchQuery(doc: doc, query: query)
        } catch {
            return AsyncThrowingStream { continuation in continuation.finish(throwing: error) }
        }
        return AsyncThrowingStream(bufferingPolicy: .unbounded) { continuation in
            let task = Task {
                do {
                    while let result = try await watch.next() {
                        let rows = result.items.map { item -> Row<T> in
                            do {
                                let value = try decodeOrThrow(type, item.json, decoder: decoder, doc: doc, path: query.collection + "/" + item.key)
                                return Row(key: item.key, value: value, error: nil)
                            } catch {
                                return Row(key: item.key, value: nil, error: error)
                            }
                        }
                        continuation.yield(QueryUpdate(rows: rows, total: result.total, diff: result.diff))
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
                        // An item that does not decode is left out; `queryUpdates` shows it.
                        continuation.yield(result.items.compactMap { try? decodeOrThrow(type, $0.json, decoder: decoder, doc: doc, path: query.collection + "/" + $0.key) })
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
            return try decodeOrThrow(type, json, decoder: decoder, doc: doc, path: path)
        } catch OutpostError.UnknownDocument {
            return nil
        }
    }

    /// Writes `value` at `path` of `doc` as JSON; returns once stored (flushed with durable writes).
    public func write<T: Encodable>(
        _ value: T, doc: String, path: String, encoder: JSONEncoder = JSONEncoder()
    ) async throws {
        let data: Data
        do {
            data = try encoder.encode(value)
        } catch {
            throw OutpostError.InvalidJson(
                reason: "cannot encode the value for \(path) of \(doc): \(error)",
                doc: doc, path: path, peer: nil, retryable: false)
        }
        let json = String(decoding: data, as: UTF8.self)
        try await self.put(doc: doc, path: path, json: json)
    }

    /// Waits until device `peer` is connected, at most `timeout` seconds.
    public func waitForPeer(peer: String, timeout: TimeInterval) async throws -> Bool {
        let ms = UInt32(max(0, min(timeout * 1000, Double(UInt32.max))))
        return try await self.waitForPeer(peer: peer, timeoutMs: ms)
    }
}

/// One item of a live query: its key in the collection and its value, or the error decoding it.
public struct Row<T> {
    public let key: String
    public let value: T?
    public let error: Error?
}

/// A live query's result: the rows, how many items match (before the limit), and the diff from
/// the previous update of the same stream.
public struct QueryUpdate<T> {
    public let rows: [Row<T>]
    public let total: UInt64
    public let diff: QueryDiff
}

/// Decodes `json` as `T`; a `DecodingError` becomes `OutpostError.InvalidJson` naming `doc` and
/// `path`, so apps catch one error type.
func decodeOrThrow<T: Decodable>(
    _ type: T.Type, _ json: String, decoder: JSONDecoder, doc: String, path: String
) throws -> T {
    do {
        return try decoder.decode(type, from: Data(json.utf8))
    } catch {
        throw OutpostError.InvalidJson(
            reason: "cannot decode the value at \(path) of \(doc) as \(T.self): \(error)",
            doc: doc, path: path, peer: nil, retryable: false)
    }
}

extension Outpost {
    /// Call when the app goes to the background (`scenePhase == .background`): the links close,
    /// the store stays open.
    public func onBackground() async throws {
        try await self.pause()
    }

    /// Call when the app comes to the foreground (`scenePhase == .active`): back on the network,
    /// every peer dialed now.
    public func onForeground() throws {
        try self.resume()
        try self.reconnectNow()
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

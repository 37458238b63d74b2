import FlowStackCore
import Foundation
import Testing

@testable import FlowStackStore

/// Journal entries are written by hand for speed; they must be the JSON `Codable` writes, which
/// is what reads them back (including entries written before).
@Suite struct SealedEventTests {
    static let items = [
        Item(json: ["name": "Ada \"quoted\"\n", "n": 7, "x": 0.1, "list": [1, nil, true]]),
        Item(json: "scalar", binary: ["file": ["mimeType": "text/plain", "data": "aGk="]]),
    ]
    static let entries: [SealedEvent] = [
        SealedEvent(event: .start(trigger: "Hook", items: items)),
        SealedEvent(event: .start(trigger: "Manual", items: [])),
        SealedEvent(event: .nodeSucceeded(node: "Set ✓", outputs: [items, [], items]), run: NodeRunInfo(attempt: 2, milliseconds: 0.123)),
        SealedEvent(
            event: .nodeSucceeded(node: "Code", outputs: [items]), run: NodeRunInfo(attempt: 1, milliseconds: 3, logs: ["a", "b\u{1}"])),
        SealedEvent(event: .resumed(node: "Wait", outputs: [items])),
        SealedEvent(event: .nodeFailed(node: "HTTP", error: "status 500: \"boom\""), run: NodeRunInfo(attempt: 3, milliseconds: 12.5)),
        SealedEvent(event: .nodeWaiting(node: "Wait", until: Date(timeIntervalSince1970: 1_800_000_000.5), items: items)),
        SealedEvent(event: .retryDue(node: "HTTP")),
        SealedEvent(event: .cancel),
        SealedEvent(event: .timedOut),
    ]

    @Test("every kind of entry reads back, and is the JSON Codable writes", arguments: entries)
    func matchesCodable(entry: SealedEvent) throws {
        let bytes = Data(try entry.jsonBytes())
        #expect(try JSONDecoder().decode(SealedEvent.self, from: bytes) == entry)
        let viaCodable = try JSONEncoder().encode(entry)
        #expect(try JSONDecoder().decode(JSONValue.self, from: bytes) == JSONDecoder().decode(JSONValue.self, from: viaCodable))
    }
}

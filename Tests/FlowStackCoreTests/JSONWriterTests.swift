import FlowStackCore
import Foundation
import Testing

/// The hand-written JSON writer must write what `JSONEncoder` writes (clients and the journal
/// read it back with `JSONDecoder`).
@Suite struct JSONWriterTests {
    static let values: [JSONValue] = [
        .null, true, false, 0, -0.0, 1, -42, 9_007_199_254_740_991, 1e300, 2.5, -0.125, 1e-7, .number(.infinity),
        "", "plain", "quote \" backslash \\ slash /", "line\nbreak\r\ttab", "\u{0}\u{1}\u{1f}\u{7f}", "naïve ✓ 𝄞 日本",
        [], [1, "two", nil, [3]], [:],
        ["b": 1, "a": ["nested": [true, nil]], "": "empty key", "Z": "upper", "é": 2],
    ]

    @Test("written JSON reads back as the same value", arguments: values)
    func roundTrip(value: JSONValue) throws {
        let decoded = try JSONDecoder().decode(JSONValue.self, from: Data(value.jsonBytes()))
        if case .number(let n) = value, !n.isFinite {
            #expect(decoded == .null)
        } else {
            #expect(decoded == value)
        }
    }

    @Test("with sorted keys it is byte for byte what the API's JSONEncoder writes")
    func sameBytesAsEncoder() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let value: JSONValue = .array(
            Self.values.filter {
                if case .number(let n) = $0 { return n == n.rounded() && abs(n) < 1e15 }
                return true
            })
        #expect(
            String(decoding: value.jsonBytes(sortedKeys: true), as: UTF8.self) == String(decoding: try encoder.encode(value), as: UTF8.self)
        )
    }
}

import FlowStackCore
import Foundation
import Testing

/// The webhook body parser: strict JSON, the same values `JSONDecoder` reads, typed errors for
/// everything else.
@Suite struct JSONParserTests {
    static let valid: [String] = [
        "null", "true", " false ", "0", "-0", "12", "-3.25", "1e3", "1E-2", "6.02e+23", "123456789012345678901234567890", "0e-400",
        "1e-310",
        #""""#, #""plain""#, #""esc \" \\ \/ \b \f \n \r \t""#, #""\u0041\u00e9\u65e5\ud834\udd1e""#, "\"naïve ✓ 𝄞\"",
        "[]", "[ ]", "[1,[2,[3,{}]]]", "{}", #"{"a":1,"b":[true,null],"c":{"d":"e"}}"#, " \t\n\r{\"k\" : \"v\" }\n",
    ]
    static let invalid: [String] = [
        "", " ", "nul", "tru", "True", "NaN", "Infinity", "-", "01", "1.", ".5", "1e", "1e+", "+1", "0x10", "1e400", "-1e400", "1e-400",
        "\"unterminated", #""bad \x escape""#, #""\u12""#, #""\ud834""#, #""\udd1e""#, #""\ud834\u0041""#, "\"tab\there\"",
        "[1,]", "[,1]", "[1 2]", "{\"a\"}", "{\"a\":}", "{a:1}", "{\"a\":1,}", "{'a':1}", "[1]]", "{} {}", "1 2", "[", "{",
        "// comment\n1", "/* c */ 1",
        // JSONDecoder is lenient here; RFC 8259 is not.
        "[1,2,]", "\u{0}1",
    ]

    @Test("valid JSON parses to what JSONDecoder reads", arguments: valid)
    func parsesValid(text: String) throws {
        let parsed = try JSONValue(parsing: Array(text.utf8))
        #expect(parsed == (try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))))
    }

    @Test("invalid JSON is a typed error", arguments: invalid)
    func refusesInvalid(text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: Array(text.utf8)) }
    }

    @Test("of a repeated key the first value counts, as JSONDecoder read it before")
    func duplicateKeys() throws {
        #expect(try JSONValue(parsing: Array(#"{"dup":1,"x":0,"dup":2}"#.utf8)) == ["dup": 1, "x": 0])
    }

    @Test("invalid UTF-8 in a string is refused")
    func invalidUTF8() {
        for bytes: [UInt8] in [
            [0x22, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0x5C, 0x6E, 0xC0, 0xAF, 0x22],
        ] {
            #expect(throws: JSONParseError.self) { try JSONValue(parsing: bytes) }
        }
    }

    @Test("nesting beyond the limit is refused, not a stack overflow")
    func depth() throws {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: Array(deep.utf8)) }
        let ok = String(repeating: "[", count: 20) + String(repeating: "]", count: 20)
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: Array(ok.utf8), maximumDepth: 19) }
        _ = try JSONValue(parsing: Array(ok.utf8), maximumDepth: 20)
    }

    /// JSONDecoder accepts a few things JSON does not (a trailing comma, a leading NUL): where
    /// the two differ, only the parser may be the stricter one.
    @Test("mutated documents: whatever the parser accepts, JSONDecoder reads as the same value")
    func differential() throws {
        var generator = SystemRandomNumberGenerator()
        let seeds = Self.valid.map { Array($0.utf8) }
        let alphabet = Array(#"{}[]",:.-+eE0123456789 \tntrufalsn\u/"#.utf8) + [0x00, 0x1F, 0x7F, 0xC3, 0xA9, 0xFF]
        var disagreements: [String] = []
        for _ in 0..<20_000 {
            var bytes = seeds.randomElement(using: &generator)!
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let position = Int.random(in: 0...bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes.insert(alphabet.randomElement(using: &generator)!, at: position)
                case 1 where position < bytes.count: bytes.remove(at: position)
                default: if position < bytes.count { bytes[position] = alphabet.randomElement(using: &generator)! }
                }
            }
            let ours = try? JSONValue(parsing: bytes)
            let foundation = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))
            // JSONDecoder refuses a zero with a bare exponent ("0e3", valid JSON); JSONSerialization reads it.
            if ours != nil, foundation == nil, Self.hasZeroWithBareExponent(bytes) { continue }
            if let ours, ours != foundation {
                disagreements.append("\(bytes): ours \(String(describing: ours)), JSONDecoder \(String(describing: foundation))")
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(5))")
    }

    static func hasZeroWithBareExponent(_ bytes: [UInt8]) -> Bool {
        let text = Array(String(decoding: bytes, as: UTF8.self).utf8)
        for index in text.indices.dropLast(2)
        where text[index] == UInt8(ascii: "0")
            && (text[index + 1] == UInt8(ascii: "e") || text[index + 1] == UInt8(ascii: "E"))
            && (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(text[index + 2])
            && (index == 0 || !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(text[index - 1]) && text[index - 1] != UInt8(ascii: "."))
        {
            return true
        }
        return false
    }

    @Test("a zero with an exponent is a number (JSONDecoder refuses it; RFC 8259 does not)")
    func zeroExponent() throws {
        #expect(try JSONValue(parsing: Array("0e3".utf8)) == 0)
        #expect(try JSONValue(parsing: Array("[-0E9]".utf8)) == [0])
    }
}

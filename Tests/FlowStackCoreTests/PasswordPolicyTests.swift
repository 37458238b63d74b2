import FlowStackCore
import Foundation
import Testing

@Suite struct PasswordPolicyTests {
    let policy = PasswordPolicy.standard

    @Test(
        "each broken rule is named",
        arguments: [
            ("Sh0rt", "at least 8"),
            ("alllowercase1", "upper-case"),
            ("ALLUPPERCASE1", "lower-case"),
            ("NoDigitsHere", "digit"),
            ("Password1", "commonly used"),
            ("Qwerty123", "commonly used"),
        ])
    func rules(password: String, message: String) {
        #expect(throws: FlowStackError.self) { try policy.validate(password) }
        do {
            try policy.validate(password)
        } catch {
            #expect(error.message.contains(message), "\(password): \(error.message)")
            #expect(error.field == "password")
            #expect(error.status == 422)
        }
    }

    @Test("a good password and a 128-character one are accepted")
    func accepted() throws {
        try policy.validate("Tr0ub4dor&3-horse")
        try policy.validate(String(repeating: "Ab1", count: 43) + "x" + "Z")
    }

    @Test("the bundled list holds thousands of common passwords")
    func listSize() {
        #expect(policy.commonPasswordCount >= 3000)
    }
}

@Suite struct ValidationTests {
    @Test("e-mail addresses are normalized and checked")
    func email() throws {
        #expect(try Validate.email("  Ann@Example.COM ") == "ann@example.com")
        for bad in ["", "ann", "ann@", "@example.com", "ann@example", "a b@example.com", "ann@@example.com"] {
            #expect(throws: FlowStackError.self) { try Validate.email(bad) }
        }
    }

    @Test("control characters in user input are encoded for logs and audit")
    func controlCharacters() {
        let encoded = "evil\nline\u{1B}[31m".encodingControlCharacters
        #expect(!encoded.contains("\n"))
        #expect(!encoded.contains("\u{1B}"))
        #expect(encoded == "evil\\u{a}line\\u{1b}[31m")
    }

    @Test("identifiers are prefixed and carry 128 random bits")
    func identifiers() {
        let ids = (0..<1000).map { _ in Identifier.make("usr") }
        #expect(Set(ids).count == 1000)
        #expect(ids.allSatisfy { Identifier.isValid($0, prefix: "usr") })
        #expect(!Identifier.isValid(ids[0], prefix: "org"))
        #expect(!Identifier.isValid("usr_../../etc", prefix: "usr"))
        #expect(!Identifier.isValid("usr_" + String(repeating: "i", count: 26), prefix: "usr"), "i, l, o and u are not in the alphabet")
    }

    @Test("ordered identifiers start with their time in milliseconds, sort by it, and still carry 80 random bits")
    func orderedIdentifiers() {
        let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz")
        func milliseconds(_ id: String) -> UInt64 {
            id.dropFirst(4).prefix(10).reduce(0) { $0 << 5 | UInt64(alphabet.firstIndex(of: $1)!) }
        }
        let moment = Date(timeIntervalSince1970: 1_764_000_000.123)
        let sameTime = (0..<1000).map { _ in Identifier.makeOrdered("exe", at: moment) }
        #expect(Set(sameTime).count == 1000)
        #expect(sameTime.allSatisfy { Identifier.isValid($0, prefix: "exe") && milliseconds($0) == 1_764_000_000_123 })
        #expect(Set(sameTime.map { $0.suffix(16) }).count == 1000)
        let times = [0.0, 1.0, 999.5, 1_000_000, 1_764_000_000.5, 4_000_000_000]
        let ids = times.map { Identifier.makeOrdered("exe", at: Date(timeIntervalSince1970: $0)) }
        #expect(ids == ids.sorted())
        #expect(ids.map(milliseconds) == times.map { UInt64(($0 * 1000).rounded(.down)) })
    }
}

@Suite struct RFC3339Tests {
    @Test(
        "valid date-times parse, whatever their fraction and offset",
        arguments: [
            ("2026-11-29T01:56:51.590Z", 1_795_917_411.590), ("2026-11-29T01:56:51Z", 1_795_917_411.0),
            ("2026-11-29T03:56:51.5+02:00", 1_795_917_411.5), ("7028-06-19T11:34:35.627232+22:55", 159_629_661_575.627232),
            ("1970-01-01T00:00:00-00:30", 1800.0), ("2024-02-29T12:00:00z", 1_709_208_000.0),
        ])
    func valid(text: String, seconds: Double) throws {
        let date = try #require(RFC3339.parse(text))
        #expect(abs(date.timeIntervalSince1970 - seconds) < 0.001, "\(text) → \(date.timeIntervalSince1970)")
    }

    @Test(
        "everything else is refused",
        arguments: [
            "", "yesterday", "2026-11-29", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
            "2026-11-29T24:00:00Z", "2026-11-29T01:56:51", "2026-11-29T01:56:51.Z",
            "2026-11-29T01:56:51+2:00", "2026-11-29T01:56:51+24:00", "2026-11-29T01:56:51Zjunk",
        ])
    func invalid(text: String) {
        #expect(RFC3339.parse(text) == nil)
    }
}

import FlowStackCore
import Foundation
import Testing

@Suite struct DateFormatTests {
    @Test(
        "timestamps are RFC 3339 UTC with milliseconds, and parse back",
        arguments: [
            (0.0, "1970-01-01T00:00:00.000Z"), (1_800_000_000.123, "2027-01-15T08:00:00.123Z"), (951_782_400.5, "2000-02-29T00:00:00.500Z"),
            (-1.5, "1969-12-31T23:59:58.500Z"),
        ])
    func format(seconds: Double, expected: String) {
        #expect(RFC3339.format(Date(timeIntervalSince1970: seconds)) == expected)
        #expect(RFC3339.parse(expected).map(RFC3339.format) == expected)
    }
}

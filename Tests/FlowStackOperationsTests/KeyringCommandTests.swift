import Foundation
import Testing

@testable import FlowStackOperations

@Suite struct KeyringCommandTests {
    @Test("a keyring command that outlives its timeout is killed with everything it started")
    func timeoutKillsTheGroup() throws {
        let started = ContinuousClock.now
        // The background subshell keeps the output pipe open: killing only `sh` would leave the read waiting a minute.
        #expect(throws: StartupError.self) {
            _ = try KeyringSource.output(of: "(sleep 60; echo late) & sleep 60", timeout: 1)
        }
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(try KeyringSource.output(of: "printf '{}'", timeout: 5) == Data("{}".utf8))
        #expect(throws: StartupError.self) { _ = try KeyringSource.output(of: "exit 3", timeout: 5) }
    }
}

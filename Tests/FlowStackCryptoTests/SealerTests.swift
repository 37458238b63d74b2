import Crypto
import FlowStackCore
import FlowStackCrypto
import Foundation
import Testing

/// Vault-style barrier tests of the envelope encryption.
@Suite struct SealerTests {
    let sealer = Sealer(keyring: .generate())
    let context = SealContext(table: "projects", rowID: "prj_1", column: "description", orgID: "org_a")
    let marker = "MARKER-secret-7f3a9c"

    @Test("ciphertext does not contain the plaintext and opens back")
    func confidentiality() throws {
        let sealed = try sealer.seal(marker, context: context)
        #expect(!Data(sealed).contains(marker: marker))
        #expect(try sealer.openString(sealed, context: context) == marker)
    }

    @Test("every single flipped byte is a typed error, never plaintext")
    func bitFlips() throws {
        let sealed = try sealer.seal(marker, context: context)
        for index in sealed.indices {
            var tampered = sealed
            tampered[index] ^= 0x01
            #expect(throws: SealError.self) { try sealer.open(tampered, purpose: .data, context: context) }
        }
        #expect(throws: SealError.self) { try sealer.open(sealed.dropLast(), purpose: .data, context: context) }
        #expect(throws: SealError.self) { try sealer.open([], purpose: .data, context: context) }
    }

    @Test("a ciphertext moved to another row, column or tenant fails to open")
    func moved() throws {
        let sealed = try sealer.seal(marker, context: context)
        for other in [
            SealContext(table: "projects", rowID: "prj_2", column: "description", orgID: "org_a"),
            SealContext(table: "projects", rowID: "prj_1", column: "name", orgID: "org_a"),
            SealContext(table: "projects", rowID: "prj_1", column: "description", orgID: "org_b"),
            SealContext(table: "invitations", rowID: "prj_1", column: "description", orgID: "org_a"),
        ] {
            #expect(throws: SealError(code: .authenticationFailed)) { try sealer.open(sealed, purpose: .data, context: other) }
        }
    }

    @Test("the same value sealed twice gives different ciphertexts")
    func uniqueNonces() throws {
        let all = try (0..<200).map { _ in try sealer.seal(marker, context: context) }
        #expect(Set(all).count == 200)
        // Every nonce (the wrapped data key's and the value's, after the header) is fresh.
        let nonces = all.flatMap { sealed -> [[UInt8]] in
            let header = 3 + Int(sealed[2])
            return [Array(sealed[header..<(header + 12)]), Array(sealed[(header + 60)..<(header + 72)])]
        }
        #expect(Set(nonces).count == 400)
        #expect(SystemRandom.bytes(56) != SystemRandom.bytes(56))
        #expect(SystemRandom.bytes(300).count == 300)
        #expect(SystemRandom.bytes(0).isEmpty)
        // Not stuck on one value: across 4,096 bytes every byte value shows up.
        #expect(Set(SystemRandom.bytes(4096)).count == 256)
    }

    @Test("another keyring cannot open it")
    func wrongKey() throws {
        let sealed = try sealer.seal(marker, context: context)
        let other = Sealer(keyring: .generate())
        #expect(throws: SealError(code: .unknownKey)) { try other.open(sealed, purpose: .data, context: context) }
        // Same key id, different material: authentication fails.
        let id = sealer.keyring.active(.data).id
        let swapped = try Keyring(
            data: [KeyEncryptionKey(id: id, key: SymmetricKey(size: .bits256))],
            connections: [KeyEncryptionKey(id: "c", key: SymmetricKey(size: .bits256))])
        #expect(throws: SealError(code: .authenticationFailed)) {
            try Sealer(keyring: swapped).open(sealed, purpose: .data, context: context)
        }
    }

    @Test("connections use a separate key from other data")
    func separateKeys() throws {
        let keyring = sealer.keyring
        #expect(keyring.active(.data).id != keyring.active(.connections).id)
        let sealed = try sealer.seal(Array(marker.utf8), purpose: .connections, context: context)
        #expect(Sealer.keyID(of: sealed) == keyring.active(.connections).id)
        #expect(throws: SealError(code: .wrongPurpose)) { try sealer.open(sealed, purpose: .data, context: context) }
        #expect(try sealer.open(sealed, purpose: .connections, context: context) == Array(marker.utf8))
    }

    @Test("a keyring round-trips through its file format and rejects bad input")
    func keyringFile() throws {
        let keyring = Keyring.generate()
        let loaded = try Keyring(json: keyring.json())
        let sealed = try Sealer(keyring: keyring).seal(marker, context: context)
        #expect(try Sealer(keyring: loaded).openString(sealed, context: context) == marker)
        #expect(throws: KeyringError.self) { try Keyring(json: Data("{}".utf8)) }
        #expect(throws: KeyringError.self) {
            try Keyring(json: Data(#"{"format":"flowstack-keyring/1","data":[{"id":"d","key":"c2hvcnQ="}],"connections":[]}"#.utf8))
        }
    }
}

extension Data {
    func contains(marker: String) -> Bool { range(of: Data(marker.utf8)) != nil }
}

@Suite struct KeyringReloadTests {
    @Test("a value sealed with a key this process lacks opens after one reload of the keyring; rotation keeps old versions")
    func reloadOnUnknownKey() throws {
        let v1 = Keyring.generate()
        let (v2, key) = v1.rotated(.data)
        let context = SealContext(table: "t", rowID: "r", column: "c", orgID: "o")
        let sealed = try Sealer(keyring: v2).seal("hello", context: context)
        #expect(Sealer.keyID(of: sealed) == key.id)
        let server = Sealer(keyring: v1)
        #expect(throws: SealError(code: .unknownKey)) { _ = try server.openString(sealed, context: context) }
        server.setReloader { v2 }
        #expect(try server.openString(sealed, context: context) == "hello")
        #expect(server.keyring.active(.data).id == key.id)
        // The old version still opens what it sealed; it cannot be removed while active.
        let old = try Sealer(keyring: v1).seal("old", context: context)
        #expect(try server.openString(old, context: context) == "old")
        #expect(throws: KeyringError.self) { _ = try v2.removing(key.id) }
        let retired = try v2.removing(v1.active(.data).id)
        #expect(throws: SealError(code: .unknownKey)) { _ = try Sealer(keyring: retired).openString(old, context: context) }
    }
}

import Crypto
import FlowStackCore
import Foundation
import Synchronization

/// The keyring shared by every copy of a `Sealer`, and how to load it again.
final class KeyringBox: Sendable {
    private let storage: Mutex<Keyring>
    private let reloader = Mutex<(@Sendable () -> Keyring?)?>(nil)
    private let lastReload = Mutex<ContinuousClock.Instant?>(nil)

    init(_ keyring: Keyring) { storage = Mutex(keyring) }
    var current: Keyring { storage.withLock { $0 } }
    func replace(_ keyring: Keyring) { storage.withLock { $0 = keyring } }
    func setReloader(_ body: @escaping @Sendable () -> Keyring?) { reloader.withLock { $0 = body } }

    /// Loads the keyring again when a value names a key this process does not have yet (another
    /// process rotated and re-encrypted it). At most once a second, so garbage cannot cause a storm.
    func reload(wanting keyID: String, purpose: KeyPurpose) -> KeyEncryptionKey? {
        guard let load = reloader.withLock({ $0 }) else { return nil }
        let now = ContinuousClock.now
        let due = lastReload.withLock { last -> Bool in
            if let last, now - last < .seconds(1) { return false }
            last = now
            return true
        }
        // The fresh keyring must keep every key this process has, unchanged: a reload adds versions.
        guard due, let fresh = load(), current.isContained(in: fresh), let key = fresh.key(id: keyID, purpose: purpose) else { return nil }
        replace(fresh)
        return key
    }
}

/// Where a ciphertext belongs. It is bound into the authenticated data, so a ciphertext copied
/// to another row, column or tenant fails to open.
public struct SealContext: Sendable, Hashable {
    public var table: String
    public var rowID: String
    public var column: String
    public var orgID: String

    public init(table: String, rowID: String, column: String, orgID: String?) {
        self.table = table
        self.rowID = rowID
        self.column = column
        self.orgID = orgID ?? "-"
    }

    var bytes: [UInt8] {
        Array("flowstack.seal.v1\u{0}\(table)\u{0}\(rowID)\u{0}\(column)\u{0}\(orgID)".utf8)
    }
}

/// Why a ciphertext did not open. Carries no plaintext and no key material.
public struct SealError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        case malformed, unsupportedVersion, unknownKey, wrongPurpose, authenticationFailed
    }
    public let code: Code
    public init(code: Code) { self.code = code }
    public var description: String {
        switch code {
        case .malformed: "the sealed value is malformed"
        case .unsupportedVersion: "the sealed value has an unsupported format version"
        case .unknownKey: "the sealed value names a key that is not in the keyring"
        case .wrongPurpose: "the sealed value was sealed for another purpose"
        case .authenticationFailed: "the sealed value failed authentication (tampered, moved or wrong key)"
        }
    }
}

/// AES-256-GCM envelope encryption.
///
/// Every value gets its own random 256-bit data key, which the purpose's active key-encryption
/// key wraps. Layout: `version(1) purpose(1) idLength(1) keyID wrappedKey(60) nonce(12) ciphertext tag(16)`.
/// The header and the `SealContext` are the authenticated data of both encryptions.
public struct Sealer: Sendable {
    public static let formatVersion: UInt8 = 1
    private let box: KeyringBox

    public init(keyring: Keyring) {
        self.box = KeyringBox(keyring)
    }

    /// The current keyring. A running server swaps in a new one after `flowstack keys rotate`
    /// (every copy of this sealer sees it): old versions keep opening, new values use the new key.
    public var keyring: Keyring { box.current }

    public func replaceKeyring(_ keyring: Keyring) {
        box.replace(keyring)
    }

    /// How to load the keyring again when a stored value names a key this process lacks.
    public func setReloader(_ body: @escaping @Sendable () -> Keyring?) {
        box.setReloader(body)
    }

    public func seal(_ plaintext: some DataProtocol, purpose: KeyPurpose, context: SealContext) throws -> [UInt8] {
        let kek = box.current.active(purpose)
        let idBytes = Array(kek.id.utf8)
        var header: [UInt8] = [Self.formatVersion, purpose.tag, UInt8(idBytes.count)]
        header += idBytes
        let aad = header + context.bytes
        // The data key and both nonces from one draw of the kernel's generator (swift-crypto's
        // own keys and nonces draw eight bytes a system call).
        let random = SystemRandom.bytes(32 + 12 + 12)
        let dataKey = SymmetricKey(data: random[0..<32])
        let wrapped = try AES.GCM.seal(random[0..<32], using: kek.key, nonce: try AES.GCM.Nonce(data: random[32..<44]), authenticating: aad)
        let box = try AES.GCM.seal(plaintext, using: dataKey, nonce: try AES.GCM.Nonce(data: random[44..<56]), authenticating: aad)
        var out = header
        out.reserveCapacity(header.count + 60 + 28 + plaintext.count)
        out += wrapped.combined!
        out += box.combined!
        return out
    }

    public func seal(_ string: String, purpose: KeyPurpose = .data, context: SealContext) throws -> [UInt8] {
        try seal(Array(string.utf8), purpose: purpose, context: context)
    }

    public func open(_ sealed: some Collection<UInt8>, purpose: KeyPurpose, context: SealContext) throws(SealError) -> [UInt8] {
        let bytes = Array(sealed)
        guard bytes.count >= 3 else { throw SealError(code: .malformed) }
        guard bytes[0] == Self.formatVersion else { throw SealError(code: .unsupportedVersion) }
        guard KeyPurpose(tag: bytes[1]) == purpose else { throw SealError(code: .wrongPurpose) }
        let idLength = Int(bytes[2])
        let headerLength = 3 + idLength
        guard bytes.count >= headerLength + 60 + 28 else { throw SealError(code: .malformed) }
        guard let keyID = String(bytes: bytes[3..<headerLength], encoding: .utf8),
            let kek = box.current.key(id: keyID, purpose: purpose) ?? box.reload(wanting: keyID, purpose: purpose)
        else { throw SealError(code: .unknownKey) }
        let aad = Array(bytes[0..<headerLength]) + context.bytes
        do {
            let wrapped = try AES.GCM.SealedBox(combined: bytes[headerLength..<(headerLength + 60)])
            let dataKey = SymmetricKey(data: try AES.GCM.open(wrapped, using: kek.key, authenticating: aad))
            let box = try AES.GCM.SealedBox(combined: bytes[(headerLength + 60)...])
            return Array(try AES.GCM.open(box, using: dataKey, authenticating: aad))
        } catch {
            throw SealError(code: .authenticationFailed)
        }
    }

    public func openString(_ sealed: some Collection<UInt8>, purpose: KeyPurpose = .data, context: SealContext) throws(SealError) -> String
    {
        let bytes = try open(sealed, purpose: purpose, context: context)
        guard let string = String(bytes: bytes, encoding: .utf8) else { throw SealError(code: .malformed) }
        return string
    }

    /// The key id a sealed value names, without opening it (for key status and rotation).
    public static func keyID(of sealed: some Collection<UInt8>) -> String? {
        let bytes = Array(sealed)
        guard bytes.count >= 3, bytes.count >= 3 + Int(bytes[2]) else { return nil }
        return String(bytes: bytes[3..<(3 + Int(bytes[2]))], encoding: .utf8)
    }
}

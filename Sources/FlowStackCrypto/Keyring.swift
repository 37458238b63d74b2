import Crypto
import Foundation

/// What a key-encryption key protects. The security page promises that connection credentials
/// are encrypted with a key separate from everything else.
public enum KeyPurpose: String, Codable, Sendable, CaseIterable {
    case data
    case connections

    var tag: UInt8 {
        switch self {
        case .data: 1
        case .connections: 2
        }
    }

    init?(tag: UInt8) {
        switch tag {
        case 1: self = .data
        case 2: self = .connections
        default: return nil
        }
    }
}

/// One version of a key-encryption key.
public struct KeyEncryptionKey: Sendable {
    public let id: String
    let key: SymmetricKey

    public init(id: String, key: SymmetricKey) {
        self.id = id
        self.key = key
    }

    static func generate(_ purpose: KeyPurpose) -> KeyEncryptionKey {
        KeyEncryptionKey(id: "\(purpose.rawValue)-" + Token.hex(Token.randomBytes(6)), key: SymmetricKey(size: .bits256))
    }
}

/// The errors of loading key material.
public struct KeyringError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The key-encryption keys: per purpose an ordered list of versions, the last one active.
///
/// Key material lives only here (a file with mode 0600, or the environment); it is never written
/// to the database. The database holds a sealed check value per key so a wrong keyring is
/// detected at start.
public struct Keyring: Sendable {
    public private(set) var versions: [KeyPurpose: [KeyEncryptionKey]]

    public init(data: [KeyEncryptionKey], connections: [KeyEncryptionKey]) throws(KeyringError) {
        guard !data.isEmpty, !connections.isEmpty else {
            throw KeyringError("the keyring needs at least one 'data' and one 'connections' key")
        }
        let ids = (data + connections).map(\.id)
        guard Set(ids).count == ids.count else { throw KeyringError("the keyring has duplicate key ids") }
        for id in ids where !Self.isValidID(id) {
            throw KeyringError("key id '\(id.prefix(80))' is not 1 to 64 letters, digits, '.', '_' or '-'")
        }
        self.versions = [.data: data, .connections: connections]
    }

    /// A new keyring with one random 256-bit key per purpose.
    public static func generate() -> Keyring {
        // Cannot fail: two non-empty lists with random, distinct ids.
        try! Keyring(data: [.generate(.data)], connections: [.generate(.connections)])
    }

    static func isValidID(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count)
            && id.utf8.allSatisfy { byte in
                (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == 0x2E || byte == 0x5F
                    || byte == 0x2D
            }
    }

    /// Whether every key of this keyring is in `other` with the same material (so `other` only
    /// adds versions: a reloaded keyring may never change what a key id means).
    public func isContained(in other: Keyring) -> Bool {
        allKeys.allSatisfy { purpose, key in
            guard let match = other.key(id: key.id, purpose: purpose) else { return false }
            return match.key.withUnsafeBytes { a in key.key.withUnsafeBytes { b in a.elementsEqual(b) } }
        }
    }

    /// This keyring with a new random key for `purpose`, which becomes the active one.
    public func rotated(_ purpose: KeyPurpose) -> (Keyring, KeyEncryptionKey) {
        var copy = self
        let key = KeyEncryptionKey.generate(purpose)
        copy.versions[purpose]!.append(key)
        return (copy, key)
    }

    /// This keyring without key `id`; the active key of a purpose cannot be removed.
    public func removing(_ id: String) throws(KeyringError) -> Keyring {
        var copy = self
        for purpose in KeyPurpose.allCases {
            guard let index = copy.versions[purpose]!.firstIndex(where: { $0.id == id }) else { continue }
            guard index != copy.versions[purpose]!.count - 1 else {
                throw KeyringError("'\(id)' is the active \(purpose.rawValue) key; rotate first")
            }
            copy.versions[purpose]!.remove(at: index)
            return copy
        }
        throw KeyringError("the keyring has no key '\(id)'")
    }

    /// The key new ciphertexts of `purpose` are sealed with.
    public func active(_ purpose: KeyPurpose) -> KeyEncryptionKey {
        versions[purpose]!.last!
    }

    public func key(id: String, purpose: KeyPurpose) -> KeyEncryptionKey? {
        versions[purpose]?.first { $0.id == id }
    }

    public var allKeys: [(KeyPurpose, KeyEncryptionKey)] {
        KeyPurpose.allCases.flatMap { purpose in versions[purpose]!.map { (purpose, $0) } }
    }

    // MARK: File format

    private struct FileFormat: Codable {
        struct Entry: Codable {
            var id: String
            var key: String
        }
        var format: String
        var data: [Entry]
        var connections: [Entry]
    }

    private static let formatName = "flowstack-keyring/1"

    /// Parses the JSON representation of a keyring.
    public init(json: Data) throws(KeyringError) {
        let file: FileFormat
        do {
            file = try JSONDecoder().decode(FileFormat.self, from: json)
        } catch {
            throw KeyringError("the keyring is not valid JSON of format \(Self.formatName)")
        }
        guard file.format == Self.formatName else {
            throw KeyringError("unsupported keyring format '\(file.format)'")
        }
        func parse(_ entries: [FileFormat.Entry]) throws(KeyringError) -> [KeyEncryptionKey] {
            var keys: [KeyEncryptionKey] = []
            for entry in entries {
                guard let bytes = Data(base64Encoded: entry.key), bytes.count == 32 else {
                    throw KeyringError("key '\(entry.id)' is not 32 bytes of base64")
                }
                keys.append(KeyEncryptionKey(id: entry.id, key: SymmetricKey(data: bytes)))
            }
            return keys
        }
        try self.init(data: parse(file.data), connections: parse(file.connections))
    }

    /// The JSON representation (contains key material: write it only to a 0600 file).
    public func json() -> Data {
        func entries(_ purpose: KeyPurpose) -> [FileFormat.Entry] {
            versions[purpose]!.map { kek in
                FileFormat.Entry(id: kek.id, key: kek.key.withUnsafeBytes { Data($0).base64EncodedString() })
            }
        }
        let file = FileFormat(format: Self.formatName, data: entries(.data), connections: entries(.connections))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try! encoder.encode(file)
    }
}

extension Keyring {
    /// A MAC key derived (HKDF-SHA256) from a data key-encryption key, for tamper evidence of
    /// records that must stay readable in clear (the audit chain).
    public func macKey(id: String, info: String) -> SymmetricKey? {
        guard let kek = key(id: id, purpose: .data) else { return nil }
        return HKDF<SHA256>.deriveKey(inputKeyMaterial: kek.key, info: Array(info.utf8), outputByteCount: 32)
    }
}

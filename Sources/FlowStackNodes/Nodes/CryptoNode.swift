import Crypto
import FlowStackCore
import FlowStackRuntime
import Foundation

/// Hashes or HMACs a value per item and stores the digest in a field.
public struct CryptoNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.crypto",
        parameters: [
            .init("action", .options, options: ["hash", "hmac"]), .init("algorithm", .options, options: ["sha256", "sha384", "sha512"]),
            .init("value", .string, required: true), .init("secret", .string), .init("outputField", .string),
            .init("encoding", .options, options: ["hex", "base64"]),
        ])

    func digest(_ data: Data, algorithm: String, key: SymmetricKey?) -> [UInt8] {
        switch (algorithm, key) {
        case ("sha384", nil): Array(SHA384.hash(data: data))
        case ("sha512", nil): Array(SHA512.hash(data: data))
        case (_, nil): Array(SHA256.hash(data: data))
        case ("sha384", let key?): Array(HMAC<SHA384>.authenticationCode(for: data, using: key))
        case ("sha512", let key?): Array(HMAC<SHA512>.authenticationCode(for: data, using: key))
        case (_, let key?): Array(HMAC<SHA256>.authenticationCode(for: data, using: key))
        }
    }

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        var out: [Item] = []
        for (index, item) in input.items.enumerated() {
            let action = try input.string("action", item: index, default: "hash")
            let algorithm = try input.string("algorithm", item: index, default: "sha256")
            let value = try input.string("value", item: index)
            var key: SymmetricKey?
            if action == "hmac" {
                let secret = try input.string("secret", item: index)
                guard !secret.isEmpty else { throw NodeError("HMAC needs a secret", field: "secret") }
                key = SymmetricKey(data: Data(secret.utf8))
            }
            let bytes = digest(Data(value.utf8), algorithm: algorithm, key: key)
            let encoded =
                try input.string("encoding", item: index, default: "hex") == "base64"
                ? Data(bytes).base64EncodedString() : bytes.map { String(format: "%02x", $0) }.joined()
            var json = item.json.objectValue ?? [:]
            json[try input.string("outputField", item: index, default: "hash")] = .string(encoded)
            out.append(Item(json: .object(json), binary: item.binary))
        }
        return .items([out])
    }
}

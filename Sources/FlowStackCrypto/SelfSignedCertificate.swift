import Crypto
import Foundation
import SwiftASN1
import X509

/// A TLS server certificate and its private key, in PEM.
public struct CertificateBundle: Sendable {
    public var certificatePEM: String
    public var privateKeyPEM: String
    /// SHA-256 of the certificate's DER encoding, as colon-separated upper-case hex.
    public var fingerprintSHA256: String

    /// The fingerprint of the first certificate in a PEM file.
    public static func fingerprint(ofPEM pem: String) throws -> String {
        let certificate = try Certificate(pemEncoded: pem)
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return Self.formatFingerprint(SHA256.hash(data: serializer.serializedBytes))
    }

    /// When the first certificate in a PEM file stops being valid.
    public static func notValidAfter(ofPEM pem: String) throws -> Date {
        try Certificate(pemEncoded: pem).notValidAfter
    }

    static func formatFingerprint(_ digest: SHA256.Digest) -> String {
        digest.map { String(format: "%02X", $0) }.joined(separator: ":")
    }
}

/// Makes the self-signed ECDSA P-256 certificate FlowStack serves on first start.
///
/// It lives 89 days (Mozilla's "modern" profile wants less than 90) and is renewed at start
/// when fewer than 30 days remain.
///
/// It has BasicConstraints (not a CA), ExtendedKeyUsage serverAuth and SANs for localhost,
/// 127.0.0.1 and ::1, and deliberately no KeyUsage extension: BoringSSL clients that trust a
/// self-signed leaf as a root reject it when KeyUsage lacks keyCertSign.
public enum SelfSignedCertificate {
    public static func make(now: Date = Date(), validityDays: Int = 89, extraHostnames: [String] = []) throws -> CertificateBundle {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("FlowStack")
            CommonName("localhost")
        }
        var sans: [GeneralName] = [.dnsName("localhost")]
        sans += extraHostnames.filter { $0 != "localhost" }.map { GeneralName.dnsName($0) }
        sans.append(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])))
        sans.append(.ipAddress(ASN1OctetString(contentBytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])))
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            try ExtendedKeyUsage([.serverAuth])
            SubjectAlternativeNames(sans)
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(TimeInterval(validityDays) * 86_400),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: .init(key)
        )
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return CertificateBundle(
            certificatePEM: try certificate.serializeAsPEM().pemString,
            privateKeyPEM: key.pemRepresentation,
            fingerprintSHA256: CertificateBundle.formatFingerprint(SHA256.hash(data: serializer.serializedBytes))
        )
    }
}

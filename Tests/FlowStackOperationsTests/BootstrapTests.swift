import FlowStackCore
import FlowStackCrypto
import FlowStackOperations
import Foundation
import Logging
import Testing

@Suite struct BootstrapTests {
    func settings() throws -> ServerSettings {
        var settings = ServerSettings()
        settings.dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("fs-boot-\(Identifier.make("t"))").path
        try SecureFile.makeDirectory(settings.dataDirectory)
        return settings
    }

    @Test("the self-signed certificate is kept while valid and renewed when fewer than 30 days remain")
    func renewal() throws {
        let settings = try settings()
        defer { try? FileManager.default.removeItem(atPath: settings.dataDirectory) }
        let logger = Logger(label: "test")
        let first = try Bootstrap.certificate(settings: settings, logger: logger)
        #expect(try Bootstrap.certificate(settings: settings, logger: logger).fingerprint == first.fingerprint)
        #expect(SecureFile.mode(of: first.keyPath) == 0o600)
        let old = try SelfSignedCertificate.make(now: Date().addingTimeInterval(-80 * 86_400))
        try SecureFile.write(Data(old.certificatePEM.utf8), to: first.certificatePath)
        try SecureFile.write(Data(old.privateKeyPEM.utf8), to: first.keyPath)
        let renewed = try Bootstrap.certificate(settings: settings, logger: logger)
        #expect(renewed.fingerprint != old.fingerprintSHA256)
        let pem = try String(contentsOfFile: renewed.certificatePath, encoding: .utf8)
        #expect(try CertificateBundle.notValidAfter(ofPEM: pem).timeIntervalSinceNow > 80 * 86_400)
        _ = try Bootstrap.tlsConfiguration(certificatePath: renewed.certificatePath, keyPath: renewed.keyPath)
    }

    @Test("the TLS configuration allows TLS 1.3 only")
    func tlsVersions() throws {
        let settings = try settings()
        defer { try? FileManager.default.removeItem(atPath: settings.dataDirectory) }
        let files = try Bootstrap.certificate(settings: settings, logger: Logger(label: "test"))
        let tls = try Bootstrap.tlsConfiguration(certificatePath: files.certificatePath, keyPath: files.keyPath)
        #expect(tls.minimumTLSVersion == .tlsv13)
        #expect(tls.maximumTLSVersion == .tlsv13)
    }
}

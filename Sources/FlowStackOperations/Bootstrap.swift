import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation
import Logging
import NIOSSL

/// A refusal to start, with a message for the operator.
public struct StartupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Prepares the data directory, storage, key material and TLS certificate: everything the
/// server needs before it listens. `flowstack serve` and the other CLI commands share it.
public enum Bootstrap {
    /// Opens (and migrates) the database with the right keyring, or refuses with a clear message.
    public static func openStore(settings: ServerSettings, logger: Logger, clock: any WallClock = SystemWallClock()) async throws -> Store {
        try SecureFile.makeDirectory(settings.dataDirectory)
        let database = try await DatabaseFactory.open(settings.resolvedDatabase, timeouts: settings.databaseTimeouts, logger: logger)
        do {
            let initialized = try await Migrations.isInitialized(database)
            let keyring = try loadKeyring(settings: settings, databaseInitialized: initialized, logger: logger)
            try await Migrations.apply(to: database, logger: logger)
            let store = Store(database: database, sealer: Sealer(keyring: keyring), clock: clock)
            do {
                try await store.verifyKeyring()
            } catch let error as KeyringError {
                throw StartupError("refusing to start: \(error.description)")
            }
            return store
        } catch {
            await database.close()
            throw error
        }
    }

    static func loadKeyring(settings: ServerSettings, databaseInitialized: Bool, logger: Logger) throws -> Keyring {
        let source = KeyringSource.from(settings)
        do {
            if let keyring = try source.load() { return keyring }
        } catch let error as StartupError {
            throw StartupError("refusing to start: \(error.description)")
        }
        guard case .dataDirectory(let path) = source, !databaseInitialized else {
            throw StartupError(
                "refusing to start: the database exists but its key material is missing; restore \(source) or set FLOWSTACK_KEYRING_FILE"
            )
        }
        let keyring = Keyring.generate()
        try SecureFile.write(keyring.json(), to: path)
        logger.notice("created a new keyring", metadata: ["path": "\(path)"])
        return keyring
    }

    /// The TLS certificate: the operator's, or a self-signed one made on first start.
    public static func certificate(settings: ServerSettings, logger: Logger) throws -> (
        certificatePath: String, keyPath: String, fingerprint: String
    ) {
        if let cert = settings.tlsCertificatePath, let key = settings.tlsKeyPath {
            guard let pem = try? String(contentsOfFile: cert, encoding: .utf8) else {
                throw StartupError("cannot read the TLS certificate \(cert)")
            }
            return (cert, key, try CertificateBundle.fingerprint(ofPEM: pem))
        }
        if (settings.tlsCertificatePath == nil) != (settings.tlsKeyPath == nil) {
            throw StartupError("give both --tls-cert and --tls-key, or neither")
        }
        let directory = (settings.dataDirectory as NSString).appendingPathComponent("tls")
        try SecureFile.makeDirectory(directory)
        let certPath = (directory as NSString).appendingPathComponent("server.crt")
        let keyPath = (directory as NSString).appendingPathComponent("server.key")
        if let pem = try? String(contentsOfFile: certPath, encoding: .utf8), FileManager.default.fileExists(atPath: keyPath),
            let expiry = try? CertificateBundle.notValidAfter(ofPEM: pem), expiry.timeIntervalSinceNow > 30 * 86_400
        {
            return (certPath, keyPath, try CertificateBundle.fingerprint(ofPEM: pem))
        }
        let bundle = try SelfSignedCertificate.make(
            extraHostnames: settings.host == "127.0.0.1" || settings.host == "0.0.0.0" ? [] : [settings.host])
        try SecureFile.write(Data(bundle.privateKeyPEM.utf8), to: keyPath)
        try SecureFile.write(Data(bundle.certificatePEM.utf8), to: certPath)
        logger.notice("created a self-signed TLS certificate", metadata: ["path": "\(certPath)", "sha256": "\(bundle.fingerprintSHA256)"])
        return (certPath, keyPath, bundle.fingerprintSHA256)
    }

    /// TLS 1.3 only, HTTP/1.1.
    public static func tlsConfiguration(certificatePath: String, keyPath: String) throws -> TLSConfiguration {
        let chain = try NIOSSLCertificate.fromPEMFile(certificatePath).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv13
        configuration.maximumTLSVersion = .tlsv13
        configuration.applicationProtocols = ["http/1.1"]
        return configuration
    }
}

import FlowStackCrypto
import Foundation
import Testing

@Suite struct PasswordHasherTests {
    let hasher = PasswordHasher()

    @Test("the stored hash names argon2id and parameters at or above ASVS minimums")
    func parameters() async throws {
        let hash = try await hasher.hash("Corr3ct-Horse")
        #expect(hash.hasPrefix("$argon2id$v=19$m="))
        let params = hash.split(separator: "$")[2].split(separator: ",").reduce(into: [String: Int]()) { result, pair in
            let kv = pair.split(separator: "=")
            result[String(kv[0])] = Int(kv[1])
        }
        #expect(params["m"]! >= 19 * 1024)
        #expect(params["t"]! >= 2)
        #expect(params["p"]! >= 1)
    }

    @Test("same password for two users gives two different hashes; both verify")
    func salted() async throws {
        let a = try await hasher.hash("Corr3ct-Horse")
        let b = try await hasher.hash("Corr3ct-Horse")
        #expect(a != b)
        #expect(await hasher.verify("Corr3ct-Horse", against: a))
        #expect(await hasher.verify("Corr3ct-Horse", against: b))
        #expect(await !hasher.verify("Corr3ct-Horsf", against: a))
        #expect(await !hasher.verify("Corr3ct-Horse", against: "$2b$12$notargon"))
    }

    @Test("a 128-character password works in full: its first 72 bytes alone do not")
    func noTruncation() async throws {
        let long = String((0..<128).map { i in Array("Aa1bcdefghijklmnopqrstuvwxyz")[i % 28] })
        #expect(long.utf8.count == 128)
        let hash = try await hasher.hash(long)
        #expect(await hasher.verify(long, against: hash))
        #expect(await !hasher.verify(String(long.prefix(72)), against: hash))
        #expect(await !hasher.verify(String(long.prefix(127)), against: hash))
    }
}

@Suite struct TokenTests {
    @Test("tokens carry 256 random bits and only their hash is kept")
    func tokens() {
        let token = Token.make(prefix: "fsk_")
        #expect(token.hasPrefix("fsk_"))
        #expect(token.count == 4 + 43)
        #expect(Token.hash(token).count == 64)
        #expect(Token.hash(token) != Token.hash(Token.make(prefix: "fsk_")))
        #expect(Token.constantTimeEquals("abc", "abc"))
        #expect(!Token.constantTimeEquals("abc", "abd"))
        #expect(!Token.constantTimeEquals("abc", "abcd"))
    }
}

@Suite struct CertificateTests {
    @Test("the self-signed certificate is a P-256 leaf for localhost and 127.0.0.1 with serverAuth and no KeyUsage")
    func selfSigned() throws {
        let bundle = try SelfSignedCertificate.make()
        #expect(bundle.certificatePEM.hasPrefix("-----BEGIN CERTIFICATE-----"))
        #expect(bundle.privateKeyPEM.contains("PRIVATE KEY"))
        #expect(try CertificateBundle.fingerprint(ofPEM: bundle.certificatePEM) == bundle.fingerprintSHA256)
        let text = try openssl(["x509", "-noout", "-text"], input: bundle.certificatePEM)
        #expect(text.contains("DNS:localhost"))
        #expect(text.contains("IP Address:127.0.0.1"))
        #expect(text.contains("TLS Web Server Authentication"))
        #expect(text.contains("CA:FALSE"))
        #expect(text.contains("prime256v1"))
        #expect(!text.contains("X509v3 Key Usage"))
    }

    func openssl(_ arguments: [String], input: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}

@Suite struct CertificateLifetimeTests {
    @Test("the self-signed certificate lives less than 90 days (Mozilla modern)")
    func lifetime() throws {
        let now = Date()
        let bundle = try SelfSignedCertificate.make(now: now)
        let expiry = try CertificateBundle.notValidAfter(ofPEM: bundle.certificatePEM)
        #expect(expiry.timeIntervalSince(now) < 90 * 86_400)
        #expect(expiry.timeIntervalSince(now) > 80 * 86_400)
    }
}

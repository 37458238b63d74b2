import FlowStackApp
import FlowStackCore
import FlowStackCrypto
import FlowStackServer
import FlowStackStore
import FlowStackTesting
import Foundation
import Testing

@Suite struct SessionTests {
    func token(_ auth: Auth) -> String {
        if case .session(let token, _) = auth { return token }
        return ""
    }

    @Test(
        "login sets a Secure, HttpOnly, SameSite=Strict cookie with a new 256-bit token each time; only its hash is stored",
        arguments: Backend.allCases)
    func cookie(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let response = try await client.post("/api/v1/auth/login", ["email": owner.email, "password": owner.password])
            let cookie = try #require(response.header("Set-Cookie"))
            for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] { #expect(cookie.contains(attribute)) }
            let first = try await client.login(owner)
            let second = try await client.login(owner)
            #expect(token(first) != token(second))
            #expect(token(first).count >= 4 + 43)
            let bytes = try app.database.rawBytes()
            #expect(!bytes.contains(marker: token(first)))
            #expect(bytes.contains(marker: Token.hash(token(first))))
            #expect(try await client.get("/api/v1/me", auth: first).status == 200)
        }
    }

    @Test("24 hours idle ends a session; activity keeps it alive up to the absolute lifetime", arguments: Backend.allCases)
    func expiry(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let idle = try await client.login(owner)
            let active = try await client.login(owner)
            app.clock.advance(by: 23 * 3600)
            #expect(try await client.get("/api/v1/me", auth: active).status == 200)
            app.clock.advance(by: 3600 + 1)
            let expired = try await client.get("/api/v1/me", auth: idle)
            #expect(expired.status == 401)
            #expect(expired.errorCode == "session_expired")
            #expect(try await client.get("/api/v1/me", auth: active).status == 200)
            // Constant activity: every 12 hours until the 7-day absolute lifetime passes.
            var last = 200
            for _ in 0..<14 {
                app.clock.advance(by: 12 * 3600)
                last = try await client.get("/api/v1/me", auth: active).status
                if last == 401 { break }
            }
            #expect(last == 401)
        }
    }

    @Test("logout, password change and account disable end sessions at once", arguments: Backend.allCases)
    func revocation(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let a = try await client.login(owner)
            let b = try await client.login(owner)
            let c = try await client.login(owner)
            #expect(try await client.post("/api/v1/auth/logout", auth: a).status == 204)
            #expect(try await client.get("/api/v1/me", auth: a).status == 401)
            #expect(try await client.get("/api/v1/me", auth: b).status == 200)

            let changed = try await client.post(
                "/api/v1/me/password", ["currentPassword": owner.password, "newPassword": "N3w-Passphrase-ok"], auth: b)
            #expect(changed.status == 204)
            #expect(try await client.get("/api/v1/me", auth: c).status == 401)
            #expect(try await client.get("/api/v1/me", auth: b).status == 200)
            #expect(try await client.post("/api/v1/auth/login", ["email": owner.email, "password": owner.password]).status == 401)

            try await Admin(store: app.store).setDisabled(email: owner.email, disabled: true)
            #expect(try await client.get("/api/v1/me", auth: b).status == 401)
            #expect(try await client.post("/api/v1/auth/login", ["email": owner.email, "password": "N3w-Passphrase-ok"]).status == 401)
        }
    }

    @Test("a wrong current password does not change the password", arguments: Backend.allCases)
    func wrongCurrentPassword(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let auth = try await client.login(owner)
            let response = try await client.post(
                "/api/v1/me/password", ["currentPassword": "Not-The-0ne", "newPassword": "N3w-Passphrase-ok"], auth: auth)
            #expect(response.status == 403)
            #expect(try await client.post("/api/v1/auth/login", ["email": owner.email, "password": owner.password]).status == 200)
        }
    }

    @Test("state-changing requests with the session cookie need the CSRF token", arguments: Backend.allCases)
    func csrf(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let auth = try await client.login(owner)
            let bare = Auth.sessionWithoutCSRF(token: token(auth))
            #expect(try await client.get("/api/v1/me", auth: bare).status == 200)
            let refused = try await client.post("/api/v1/orgs/\(owner.orgID)/projects", ["name": "P"], auth: bare)
            #expect(refused.status == 403)
            #expect(refused.errorCode == "csrf_token_invalid")
            let forged = try await client.post(
                "/api/v1/orgs/\(owner.orgID)/projects", ["name": "P"], auth: .session(token: token(auth), csrf: "forged"))
            #expect(forged.status == 403)
            #expect(try await client.post("/api/v1/orgs/\(owner.orgID)/projects", ["name": "P"], auth: auth).status == 201)
            let projects = try await client.get("/api/v1/orgs/\(owner.orgID)/projects", auth: auth)
            #expect((projects.json["items"] as? [Any])?.count == 1)
        }
    }
}

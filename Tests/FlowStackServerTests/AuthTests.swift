import FlowStackCore
import FlowStackServer
import FlowStackStore
import FlowStackTesting
import Foundation
import Testing

@Suite struct SetupAndSignupTests {
    @Test("the setup token works once; a wrong one is refused", arguments: Backend.allCases)
    func setupToken(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let token = try await app.setupToken()
            let body: [String: Any] = [
                "token": token, "email": "o@example.com", "password": APIClient.password, "name": "O", "organization": "Acme",
            ]
            var wrong = body
            wrong["token"] = "fst_wrong"
            let refused = try await client.post("/api/v1/setup", wrong)
            #expect(refused.status == 403)
            #expect(refused.errorCode == "invalid_setup_token")
            let created = try await client.post("/api/v1/setup", body)
            #expect(created.status == 201)
            #expect((created.json["organization"] as? [String: Any])?["plan"] as? String == "free")
            var again = body
            again["email"] = "p@example.com"
            let second = try await client.post("/api/v1/setup", again)
            #expect(second.status == 409)
            #expect(second.errorCode == "already_set_up")
            #expect(try await app.store.countUsers() == 1)
        }
    }

    @Test("sign-up is off by default and creates a free organization when enabled", arguments: Backend.allCases)
    func signup(backend: Backend) async throws {
        let off = try await TestApp.make(backend)
        try await off.test { client in
            let response = try await client.post(
                "/api/v1/auth/signup", ["email": "s@example.com", "password": APIClient.password, "name": "S", "organization": "S"])
            #expect(response.status == 403)
            #expect(response.errorCode == "signup_disabled")
        }
        let on = try await TestApp.make(backend) { $0.app.allowSignup = true }
        try await on.test { client in
            let response = try await client.post(
                "/api/v1/auth/signup", ["email": "s@example.com", "password": APIClient.password, "name": "S", "organization": "S"])
            #expect(response.status == 201)
            #expect((response.json["organization"] as? [String: Any])?["plan"] as? String == "free")
            #expect((response.json["organization"] as? [String: Any])?["role"] as? String == "owner")
            let dup = try await client.post(
                "/api/v1/auth/signup", ["email": "S@example.com", "password": APIClient.password, "name": "S", "organization": "S"])
            #expect(dup.status == 409)
            #expect(dup.errorCode == "email_taken")
        }
    }

    @Test("weak passwords are refused with the rule named, and nothing is created", arguments: Backend.allCases)
    func weakPasswords(backend: Backend) async throws {
        let app = try await TestApp.make(backend) { $0.app.allowSignup = true }
        try await app.test { client in
            for (password, rule) in [
                ("Ab1", "at least 8"), ("abcdefg1", "upper-case"), ("ABCDEFG1", "lower-case"), ("Abcdefgh", "digit"),
                ("Password1", "commonly used"),
            ] {
                let response = try await client.post(
                    "/api/v1/auth/signup", ["email": "w@example.com", "password": password, "name": "W", "organization": "W"])
                #expect(response.status == 422, "\(password)")
                #expect(response.errorField == "password")
                let message = response.errorMessage
                #expect(message.contains(rule), "\(password): \(message)")
            }
            #expect(try await app.store.countUsers() == 0)
        }
    }

    @Test("a 128-character password logs in; its first 72 characters do not", arguments: Backend.allCases)
    func longPassword(backend: Backend) async throws {
        let app = try await TestApp.make(backend) { $0.app.allowSignup = true }
        try await app.test { client in
            let long = String((0..<128).map { i in Array("Zq7wertyuiopasdfghjklzxcvbnm")[i % 28] })
            let created = try await client.post(
                "/api/v1/auth/signup", ["email": "l@example.com", "password": long, "name": "L", "organization": "L"])
            #expect(created.status == 201)
            #expect(try await client.post("/api/v1/auth/login", ["email": "l@example.com", "password": long]).status == 200)
            #expect(
                try await client.post("/api/v1/auth/login", ["email": "l@example.com", "password": String(long.prefix(72))]).status == 401)
        }
    }
}

@Suite struct LoginTests {
    @Test("unknown e-mail and wrong password get the same answer", arguments: Backend.allCases)
    func sameAnswer(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let unknown = try await client.post("/api/v1/auth/login", ["email": "nobody@example.com", "password": "Wrong-Passw0rd"])
            let wrong = try await client.post("/api/v1/auth/login", ["email": owner.email, "password": "Wrong-Passw0rd"])
            #expect(unknown.status == 401)
            #expect(unknown.status == wrong.status)
            #expect(unknown.text == wrong.text)
            #expect(unknown.errorCode == "invalid_credentials")
        }
    }

    @Test("10 failures lock the account for 30 minutes, even against the right password", arguments: Backend.allCases)
    func lockout(backend: Backend) async throws {
        let app = try await TestApp.make(backend) { $0.app.ipFailureLimit = 1000 }
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            for i in 1...10 {
                let response = try await client.post(
                    "/api/v1/auth/login", ["email": owner.email, "password": "Wrong-Passw0rd"],
                    headers: ["X-Forwarded-For": "10.0.0.\(i)"])
                #expect(response.status == (i < 10 ? 401 : 423), "attempt \(i)")
            }
            let locked = try await client.post("/api/v1/auth/login", ["email": owner.email, "password": owner.password])
            #expect(locked.status == 423)
            #expect(locked.errorCode == "account_locked")
            let retry = Int(locked.header("Retry-After") ?? "") ?? 0
            #expect(retry > 1700 && retry <= 1800)
            app.clock.advance(by: 29 * 60)
            #expect(try await client.post("/api/v1/auth/login", ["email": owner.email, "password": owner.password]).status == 423)
            app.clock.advance(by: 61)
            #expect(try await client.post("/api/v1/auth/login", ["email": owner.email, "password": owner.password]).status == 200)
        }
    }

    @Test("failures from many addresses all count toward the lockout", arguments: Backend.allCases)
    func manyAddresses(backend: Backend) async throws {
        let app = try await TestApp.make(backend) { $0.trustedProxies = ["unknown"] }
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            for i in 1...10 {
                _ = try await client.post(
                    "/api/v1/auth/login", ["email": owner.email, "password": "Wrong-Passw0rd"],
                    headers: ["X-Forwarded-For": "198.51.100.\(i)"])
            }
            let response = try await client.post(
                "/api/v1/auth/login", ["email": owner.email, "password": owner.password], headers: ["X-Forwarded-For": "203.0.113.9"])
            #expect(response.status == 423)
        }
    }

    @Test("50 parallel wrong attempts cannot race past the limit", arguments: Backend.allCases)
    func parallel(backend: Backend) async throws {
        let app = try await TestApp.make(backend) { $0.app.ipFailureLimit = 1000 }
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        try await client.post("/api/v1/auth/login", ["email": owner.email, "password": "Wrong-Passw0rd"]).status
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 401 }.count <= 9)
            #expect(statuses.filter { $0 == 423 }.count >= 41)
            #expect(try await client.post("/api/v1/auth/login", ["email": owner.email, "password": owner.password]).status == 423)
        }
    }

    @Test("per-address throttling stops spraying across accounts; a spoofed X-Forwarded-For does not help", arguments: Backend.allCases)
    func spraying(backend: Backend) async throws {
        let app = try await TestApp.make(backend) { $0.app.ipFailureLimit = 20 }
        try await app.test { client in
            _ = try await client.setupOwner(app)
            var statuses: [Int] = []
            for i in 0..<25 {
                // Not a trusted proxy: the forwarded address is ignored.
                let response = try await client.post(
                    "/api/v1/auth/login", ["email": "user\(i)@example.com", "password": "Summer-2026x"],
                    headers: ["X-Forwarded-For": "192.0.2.\(i)"])
                statuses.append(response.status)
            }
            #expect(statuses.prefix(20).allSatisfy { $0 == 401 })
            #expect(statuses.suffix(5).allSatisfy { $0 == 429 })
            let throttled = try await client.post("/api/v1/auth/login", ["email": "x@example.com", "password": "y"])
            #expect(throttled.errorCode == "too_many_attempts")
            #expect(Int(throttled.header("Retry-After") ?? "") ?? 0 > 0)
            app.clock.advance(by: 15 * 60 + 1)
            #expect(try await client.post("/api/v1/auth/login", ["email": "x@example.com", "password": "y"]).status == 401)
        }
    }

    @Test("an admin can unlock a locked member; lockout and unlock are audited", arguments: Backend.allCases)
    func unlock(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let member = try await client.createAccount(app, email: "m@example.com")
            try await client.addMember(app, userID: member.userID, orgID: owner.orgID, role: .member)
            for _ in 1...10 { _ = try await client.post("/api/v1/auth/login", ["email": member.email, "password": "Wrong-Passw0rd"]) }
            #expect(try await client.post("/api/v1/auth/login", ["email": member.email, "password": member.password]).status == 423)
            let admin = try await client.login(owner)
            let members = try await client.get("/api/v1/orgs/\(owner.orgID)/members", auth: admin)
            let listed = (members.json["items"] as? [[String: Any]] ?? []).first { $0["userId"] as? String == member.userID }
            #expect(listed?["locked"] as? Bool == true)
            let unlocked = try await client.post("/api/v1/orgs/\(owner.orgID)/members/\(member.userID)/unlock", auth: admin)
            #expect(unlocked.status == 204)
            #expect(try await client.post("/api/v1/auth/login", ["email": member.email, "password": member.password]).status == 200)
            // A plain member cannot unlock anyone.
            let memberAuth = try await client.login(member)
            #expect(try await client.post("/api/v1/orgs/\(owner.orgID)/members/\(owner.userID)/unlock", auth: memberAuth).status == 403)
            let store = app.store
            let actions = try await store.read { db in
                try await db.raw("SELECT action FROM audit_events WHERE resource_id = \(bind: member.userID) ORDER BY seq").all()
                    .map { try $0.decode(column: "action", as: String.self) }
            }
            #expect(actions.contains("user.locked"))
            #expect(actions.contains("user.unlocked"))
            #expect(try await store.verifyAudit().isIntact)
        }
    }
}

import Foundation

/// The password rule of the security page (at least 8 characters with upper case, lower case
/// and a digit), plus ASVS 6.2.4's common-password list and a generous maximum length.
public struct PasswordPolicy: Sendable {
    public static let minimumLength = 8
    /// Long enough for passphrases; the bound only stops hashing megabytes.
    public static let maximumLength = 256

    private let common: Set<String>

    public init(commonPasswords: Set<String>) {
        self.common = commonPasswords
    }

    /// The policy with the bundled list of the 10,000 most common passwords.
    public static let standard: PasswordPolicy = {
        guard let url = Bundle.module.url(forResource: "common-passwords", withExtension: "txt"),
            let text = try? String(contentsOf: url, encoding: .utf8)
        else {
            preconditionFailure("the common-password list is missing from the FlowStackCore bundle")
        }
        let words = text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map(String.init)
        return PasswordPolicy(commonPasswords: Set(words))
    }()

    public var commonPasswordCount: Int { common.count }

    /// Throws a `FlowStackError` naming the first rule `password` breaks.
    public func validate(_ password: String, field: String = "password") throws(FlowStackError) {
        let length = password.count
        if length < Self.minimumLength {
            throw .validation("The password must be at least \(Self.minimumLength) characters long.", field: field)
        }
        if length > Self.maximumLength {
            throw .validation("The password must be at most \(Self.maximumLength) characters long.", field: field)
        }
        if !password.contains(where: { $0.isUppercase }) {
            throw .validation("The password must contain an upper-case letter.", field: field)
        }
        if !password.contains(where: { $0.isLowercase }) {
            throw .validation("The password must contain a lower-case letter.", field: field)
        }
        if !password.contains(where: { $0.isNumber && $0.isASCII }) {
            throw .validation("The password must contain a digit.", field: field)
        }
        if common.contains(password.lowercased()) {
            throw .validation("The password is on the list of commonly used passwords.", field: field)
        }
    }
}

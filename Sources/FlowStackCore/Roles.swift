/// A member's role in an organization, from most to least powerful.
public enum OrgRole: String, Codable, Sendable, CaseIterable, Comparable {
    case owner, admin, member, viewer

    var rank: Int {
        switch self {
        case .owner: 3
        case .admin: 2
        case .member: 1
        case .viewer: 0
        }
    }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rank < rhs.rank }
}

/// A user's role in one project.
public enum ProjectRole: String, Codable, Sendable, CaseIterable, Comparable {
    case editor, runner, viewer

    var rank: Int {
        switch self {
        case .editor: 2
        case .runner: 1
        case .viewer: 0
        }
    }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rank < rhs.rank }
}

/// What an API key may do.
public enum APIKeyScope: String, Codable, Sendable, CaseIterable {
    case read, write
}

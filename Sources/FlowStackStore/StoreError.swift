/// What a repository refuses for what the data holds (the database being unreachable is
/// `DatabaseUnavailable`). Adapters turn these into their own answers (the HTTP layer: 404/409).
public enum StoreError: Error, Sendable, Equatable {
    /// The row the change is about does not exist.
    case notFound
    /// An account with this e-mail address already exists.
    case emailTaken
    /// The user is already a member of the organization.
    case alreadyMember
    /// The change would leave an organization without an owner.
    case lastOwner
    /// A statement that always returns a row returned none.
    case noRowReturned
}

import FlowStackCore
import FlowStackStore

extension FlowStackError {
    /// The HTTP answer to what a repository refused: the one place store errors become statuses.
    init(_ error: StoreError) {
        switch error {
        case .notFound: self = .notFound
        case .emailTaken: self = .conflict("email_taken", "An account with this e-mail address already exists.", field: "email")
        case .alreadyMember: self = .conflict("already_member", "The user is already a member of this organization.")
        case .lastOwner: self = .conflict("last_owner", "An organization must keep at least one owner.", field: "role")
        case .noRowReturned: self = FlowStackError(status: 500, code: "internal_error", message: "An internal error occurred.")
        }
    }

    init(_ error: WorkflowStoreError) {
        switch error {
        case .staleVersion(let current):
            self = .conflict(
                "stale_version",
                "The workflow was changed since it was loaded; the current version is \(current). Reload it and apply your change again.",
                field: "versionId")
        case .webhookPathTaken(let path):
            self = .conflict("webhook_path_taken", "Another active workflow already serves /webhook/\(path).", field: "nodes")
        }
    }
}

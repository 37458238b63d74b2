import Foundation
import Hummingbird
import NIOCore

/// Serves the OpenAPI 3.1 document of the public API. It is written by hand next to the
/// routes; `OpenAPITests` checks every router path against it and schemathesis checks the
/// running server against it.
struct OpenAPIController {
    func addRoutes(to group: RouterGroup<FlowStackRequestContext>) {
        let body = ByteBuffer(bytes: OpenAPIDocument.json)
        group.get("openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: body))
        }
    }
}

/// The OpenAPI document, built from small helpers so each operation reads as one line of intent.
enum OpenAPIDocument {
    typealias Object = [String: Any]

    static let json: Data = {
        try! JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes])
    }()

    static func ref(_ name: String) -> Object { ["$ref": "#/components/schemas/\(name)"] }
    nonisolated(unsafe) static let string: Object = ["type": "string"]
    nonisolated(unsafe) static let dateTime: Object = ["type": "string", "format": "date-time"]
    static func nullable(_ schema: Object) -> Object { ["oneOf": [schema, ["type": "null"]]] }
    static func object(_ properties: [String: Object], required: [String]? = nil) -> Object {
        ["type": "object", "properties": properties, "required": required ?? Array(properties.keys).sorted()]
    }
    static func list(_ item: String) -> Object {
        object(["items": ["type": "array", "items": ref(item)], "nextCursor": nullable(string)])
    }
    /// A display name: 1–200 characters, at least one not blank, no control characters.
    nonisolated(unsafe) static let nonEmpty: Object = [
        "type": "string", "minLength": 1, "maxLength": 200,
        "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$",
    ]
    nonisolated(unsafe) static let email: Object = ["type": "string", "format": "email", "maxLength": 254]

    nonisolated(unsafe) static let schemas: [String: Object] = [
        "Error": object(["error": object(["code": string, "message": string, "field": string], required: ["code", "message"])]),
        "Status": object(["status": string]),
        "Readiness": object(["status": string, "database": string, "worker": string]),
        "User": object(["id": string, "email": string, "name": string, "createdAt": dateTime]),
        "Organization": object(
            [
                "id": string, "name": string, "plan": ["type": "string", "enum": ["free", "pro", "team", "enterprise"]],
                "role": string, "createdAt": dateTime,
            ], required: ["id", "name", "plan", "createdAt"]),
        "Account": object(["user": ref("User"), "organization": ref("Organization")]),
        "Login": object(["user": ref("User"), "csrfToken": string]),
        "Me": object([
            "user": ref("User"), "organizations": ["type": "array", "items": ref("Organization")],
            "authentication": ["type": "string", "enum": ["session", "api_key"]],
        ]),
        "Member": object([
            "userId": string, "email": string, "name": string, "role": ref("OrgRole"), "locked": ["type": "boolean"], "joinedAt": dateTime,
        ]),
        "OrgRole": ["type": "string", "enum": ["owner", "admin", "member", "viewer"]],
        "ProjectRole": ["type": "string", "enum": ["editor", "runner", "viewer"]],
        "Invitation": object(["id": string, "email": string, "role": ref("OrgRole"), "token": string, "expiresAt": dateTime]),
        "InvitationAccepted": object(["organization": ref("Organization"), "user": ref("User")]),
        "Project": object([
            "id": string, "orgId": string, "name": string, "description": string, "createdAt": dateTime, "updatedAt": dateTime,
        ]),
        "ProjectMember": object(["userId": string, "email": string, "name": string, "role": ref("ProjectRole")]),
        "APIKey": object([
            "id": string, "name": string, "prefix": string, "last4": string, "scope": ["type": "string", "enum": ["read", "write"]],
            "projectId": nullable(string), "createdAt": dateTime, "lastUsedAt": nullable(dateTime),
            "expiresAt": nullable(dateTime), "rotationDue": ["type": "boolean"],
        ]),
        "CreatedAPIKey": ["allOf": [ref("APIKey"), object(["key": string])]],
        "AuditEvent": object([
            "id": string, "action": string, "actor": object(["type": string, "id": nullable(string)]),
            "resource": object(["type": string, "id": nullable(string)]), "outcome": string, "ip": string,
            "userAgent": string, "createdAt": dateTime, "details": ["type": "object", "additionalProperties": string],
        ]),
        "OrganizationList": list("Organization"),
        "MemberList": list("Member"),
        "ProjectList": list("Project"),
        "ProjectMemberList": list("ProjectMember"),
        "APIKeyList": list("APIKey"),
        "AuditEventList": list("AuditEvent"),
        "Node": object(
            ["name": string, "type": string, "typeVersion": ["type": "integer"], "parameters": ["type": "object"]],
            required: ["name", "type"]),
        "Edge": object(
            ["from": string, "to": string, "output": ["type": "integer"], "input": ["type": "integer"]], required: ["from", "to"]),
        "Workflow": object(
            [
                "id": string, "projectId": string, "name": string, "active": ["type": "boolean"], "versionId": string,
                "version": ["type": "integer"], "nodes": ["type": "array", "items": ref("Node")],
                "edges": ["type": "array", "items": ref("Edge")],
                "settings": ["type": "object"], "createdAt": dateTime, "updatedAt": dateTime,
                "warnings": [
                    "type": "array", "items": ref("CredentialWarning"),
                    "description": "Hard-coded credentials found on save (create and update answers only)",
                ],
            ],
            required: ["id", "projectId", "name", "active", "versionId", "version", "nodes", "edges", "settings", "createdAt", "updatedAt"]),
        "CredentialWarning": object(
            ["node": string, "field": string, "line": ["type": "integer"], "kind": string, "message": string],
            required: ["node", "field", "kind", "message"]),
        "SecurityReport": object([
            "credentialWarnings": [
                "type": "array",
                "items": object([
                    "workflowId": string, "workflowName": string, "projectId": string,
                    "warning": ref("CredentialWarning"),
                ]),
            ],
            "keysDueForRotation": [
                "type": "array",
                "items": object(["purpose": string, "keyId": string, "createdAt": dateTime, "ageDays": ["type": "integer"]]),
            ],
            "connectionsNeverTested": [
                "type": "array", "items": object(["id": string, "name": string, "projectId": string, "type": string]),
            ],
            "connectionsFailing": [
                "type": "array", "items": object(["id": string, "name": string, "projectId": string, "type": string, "message": string]),
            ],
            "apiKeysDueForRotation": ["type": "array", "items": object(["id": string, "name": string, "createdAt": dateTime])],
        ]),
        "WorkflowInput": object(
            [
                "name": nonEmpty, "nodes": ["type": "array", "items": ref("Node")], "edges": ["type": "array", "items": ref("Edge")],
                "settings": ["type": "object"], "versionId": string,
            ], required: ["name", "nodes"]),
        "WorkflowVersion": object(
            ["id": string, "version": ["type": "integer"], "createdBy": string, "createdAt": dateTime],
            required: ["id", "version", "createdAt"]),
        "RunResult": object(
            [
                "id": string, "status": string, "output": ["type": "array", "items": ["type": "object"]], "error": string,
                "failedNode": string,
            ],
            required: ["id", "status", "output"]),
        "RunAccepted": object(["id": string, "status": string]),
        "NodeType": object(
            [
                "type": string, "versions": ["type": "array", "items": ["type": "integer"]], "trigger": ["type": "boolean"],
                "inputs": ["type": "integer"], "outputs": ["type": "integer"],
                "parameters": ["type": "array", "items": ["type": "object"]],
            ],
            required: ["type", "versions", "trigger", "inputs", "parameters"]),
        "Execution": object(
            [
                "id": string, "workflowId": string, "projectId": string, "versionId": string, "mode": string,
                "status": ["type": "string", "enum": ["queued", "running", "waiting", "succeeded", "failed", "cancelled"]],
                "createdAt": dateTime, "startedAt": dateTime, "finishedAt": dateTime, "waitUntil": dateTime, "error": string,
                "failedNode": string, "retryOf": string, "parentId": string, "output": ["type": "array"], "nodes": ["type": "array"],
                "resumeUrl": [
                    "type": "string", "format": "uri",
                    "description": "While waiting for a resume call, to members who may run the workflow",
                ],
            ],
            required: ["id", "workflowId", "projectId", "versionId", "mode", "status", "createdAt"]),
        "Resumed": object(["executionId": string, "status": string]),
        "Variable": object(["name": string, "value": string, "createdAt": dateTime, "updatedAt": dateTime]),
        "VariableList": list("Variable"),
        "Connection": object(
            [
                "id": string, "projectId": string, "name": string,
                "type": ["type": "string", "enum": ["apiKey", "bearer", "basic", "headers", "oauth2", "secrets"]],
                "data": ["type": "object", "additionalProperties": string, "description": "The non-secret fields"],
                "secrets": [
                    "type": "object", "additionalProperties": object(["set": ["type": "boolean"], "last4": string]),
                    "description": "Which secret fields are set, with the last 4 characters of long ones; never the values",
                ],
                "testUrl": string, "allowedHosts": ["type": "array", "items": string], "authorized": ["type": "boolean"],
                "status": ["type": "string", "enum": ["untested", "ok", "error"]],
                "statusMessage": string, "lastTestedAt": dateTime, "tokenExpiresAt": dateTime, "createdAt": dateTime, "updatedAt": dateTime,
            ], required: ["id", "projectId", "name", "type", "data", "secrets", "allowedHosts", "status", "createdAt", "updatedAt"]),
        "ConnectionList": list("Connection"),
        "ConnectionTest": object(
            ["ok": ["type": "boolean"], "status": ["type": "integer"], "message": string], required: ["ok", "message"]),
        "OAuth2Connected": object(["connected": string]),
        "WorkflowList": list("Workflow"),
        "WorkflowVersionList": list("WorkflowVersion"),
        "NodeTypeList": list("NodeType"),
        "ExecutionList": list("Execution"),
    ]

    static func body(_ schema: Object, required: Bool = true) -> Object {
        ["required": required, "content": ["application/json": ["schema": schema]]]
    }

    static func operation(
        _ id: String, _ summary: String, ok: Int, schema: String?, body requestBody: Object? = nil,
        parameters: [Object] = [], secured: Bool = true, tag: String
    ) -> Object {
        var responses: Object = ["default": ["description": "Error", "content": ["application/json": ["schema": ref("Error")]]]]
        if let schema {
            responses[String(ok)] = ["description": summary, "content": ["application/json": ["schema": ref(schema)]]]
        } else {
            responses[String(ok)] = ["description": summary]
        }
        var op: Object = ["operationId": id, "summary": summary, "responses": responses, "tags": [tag]]
        if let requestBody { op["requestBody"] = requestBody }
        if !parameters.isEmpty { op["parameters"] = parameters }
        op["security"] = secured ? [["apiKey": [String]()], ["session": [String]()]] : [[String: [String]]()]
        return op
    }

    /// An operation that answers with a redirect.
    static func redirect(_ id: String, _ summary: String, parameters: [Object], secured: Bool) -> Object {
        var op = operation(id, summary, ok: 302, schema: nil, parameters: parameters, secured: secured, tag: "connections")
        var responses = op["responses"] as! Object
        responses["302"] = ["description": summary, "headers": ["Location": ["schema": string]]]
        op["responses"] = responses
        return op
    }

    static func connectionInput(create: Bool) -> Object {
        var properties: [String: Object] = [
            "name": ["type": "string", "minLength": 1, "maxLength": 100],
            "data": ["type": "object", "additionalProperties": ["type": ["string", "null"]]],
            "testUrl": ["type": "string", "maxLength": 2048],
            "allowedHosts": ["type": "array", "maxItems": 20, "items": ["type": "string", "maxLength": 255]],
        ]
        if create { properties["type"] = ["type": "string", "enum": ["apiKey", "bearer", "basic", "headers", "oauth2", "secrets"]] }
        return object(properties, required: create ? ["name", "type", "data"] : [])
    }

    static func path(_ name: String) -> Object {
        ["name": name, "in": "path", "required": true, "schema": string]
    }

    static func query(_ name: String, _ schema: Object) -> Object {
        ["name": name, "in": "query", "required": false, "schema": schema]
    }

    nonisolated(unsafe) static let paths: [String: Object] = [
        "/healthz": ["get": operation("health", "Liveness", ok: 200, schema: "Status", secured: false, tag: "health")],
        "/readyz": [
            "get": operation(
                "ready", "Readiness (the database answers, the execution worker runs)", ok: 200, schema: "Readiness", secured: false,
                tag: "health")
        ],
        "/api/v1/openapi.json": [
            "get": [
                "operationId": "openapi", "summary": "This document", "tags": ["meta"],
                "security": [[String: [String]]()],
                "responses": ["200": ["description": "OpenAPI document", "content": ["application/json": ["schema": ["type": "object"]]]]],
            ]
        ],
        "/api/v1/setup": [
            "post": operation(
                "setup", "Create the owner with the one-time setup token", ok: 201, schema: "Account",
                body: body(object(["token": string, "email": email, "password": string, "name": nonEmpty, "organization": nonEmpty])),
                secured: false, tag: "auth")
        ],
        "/api/v1/auth/signup": [
            "post": operation(
                "signup", "Sign up (when enabled)", ok: 201, schema: "Account",
                body: body(object(["email": email, "password": string, "name": nonEmpty, "organization": nonEmpty])), secured: false,
                tag: "auth")
        ],
        "/api/v1/auth/login": [
            "post": operation(
                "login", "Log in; sets the session cookie", ok: 200, schema: "Login",
                body: body(object(["email": string, "password": string])), secured: false, tag: "auth")
        ],
        "/api/v1/auth/logout": ["post": operation("logout", "End the session", ok: 204, schema: nil, tag: "auth")],
        "/api/v1/me": ["get": operation("getMe", "The caller", ok: 200, schema: "Me", tag: "auth")],
        "/api/v1/me/password": [
            "post": operation(
                "changePassword", "Change the password; ends other sessions", ok: 204, schema: nil,
                body: body(object(["currentPassword": string, "newPassword": string])), tag: "auth")
        ],
        "/api/v1/orgs": [
            "get": operation("listOrganizations", "The caller's organizations", ok: 200, schema: "OrganizationList", tag: "orgs")
        ],
        "/api/v1/orgs/{orgId}": [
            "get": operation(
                "getOrganization", "An organization", ok: 200, schema: "Organization", parameters: [path("orgId")], tag: "orgs")
        ],
        "/api/v1/orgs/{orgId}/members": [
            "get": operation("listMembers", "Members", ok: 200, schema: "MemberList", parameters: [path("orgId")], tag: "orgs")
        ],
        "/api/v1/orgs/{orgId}/members/{userId}": [
            "patch": operation(
                "changeMemberRole", "Change a member's role", ok: 200, schema: "Member",
                body: body(object(["role": ref("OrgRole")])), parameters: [path("orgId"), path("userId")], tag: "orgs"),
            "delete": operation(
                "removeMember", "Remove a member", ok: 204, schema: nil, parameters: [path("orgId"), path("userId")], tag: "orgs"),
        ],
        "/api/v1/orgs/{orgId}/members/{userId}/unlock": [
            "post": operation(
                "unlockMember", "Unlock a locked account", ok: 204, schema: nil,
                parameters: [path("orgId"), path("userId")], tag: "orgs")
        ],
        "/api/v1/orgs/{orgId}/invitations": [
            "post": operation(
                "invite", "Invite someone by e-mail", ok: 201, schema: "Invitation",
                body: body(object(["email": email, "role": ref("OrgRole")])), parameters: [path("orgId")], tag: "orgs")
        ],
        "/api/v1/invitations/{token}/accept": [
            "post": operation(
                "acceptInvitation", "Accept an invitation", ok: 200, schema: "InvitationAccepted",
                body: body(object(["name": nullable(nonEmpty), "password": nullable(string)], required: []), required: false),
                parameters: [path("token")], secured: false, tag: "orgs")
        ],
        "/api/v1/orgs/{orgId}/projects": [
            "get": operation(
                "listProjects", "Projects the caller can see", ok: 200, schema: "ProjectList", parameters: [path("orgId")], tag: "projects"),
            "post": operation(
                "createProject", "Create a project", ok: 201, schema: "Project",
                body: body(
                    object(["name": nonEmpty, "description": nullable(["type": "string", "maxLength": 2000])], required: ["name"])),
                parameters: [path("orgId")], tag: "projects"),
        ],
        "/api/v1/projects/{projectId}": [
            "get": operation("getProject", "A project", ok: 200, schema: "Project", parameters: [path("projectId")], tag: "projects"),
            "patch": operation(
                "updateProject", "Rename or describe a project (null or absent: unchanged)", ok: 200, schema: "Project",
                body: body(
                    object(["name": nullable(nonEmpty), "description": nullable(["type": "string", "maxLength": 2000])], required: [])),
                parameters: [path("projectId")], tag: "projects"),
            "delete": operation(
                "deleteProject", "Delete a project", ok: 204, schema: nil, parameters: [path("projectId")], tag: "projects"),
        ],
        "/api/v1/projects/{projectId}/members": [
            "get": operation(
                "listProjectMembers", "Project members", ok: 200, schema: "ProjectMemberList",
                parameters: [path("projectId")], tag: "projects")
        ],
        "/api/v1/projects/{projectId}/members/{userId}": [
            "put": operation(
                "setProjectMember", "Give a member a project role", ok: 200, schema: "ProjectMember",
                body: body(object(["role": ref("ProjectRole")])), parameters: [path("projectId"), path("userId")], tag: "projects"),
            "delete": operation(
                "removeProjectMember", "Remove a project member", ok: 204, schema: nil,
                parameters: [path("projectId"), path("userId")], tag: "projects"),
        ],
        "/api/v1/orgs/{orgId}/api-keys": [
            "get": operation("listAPIKeys", "API keys", ok: 200, schema: "APIKeyList", parameters: [path("orgId")], tag: "api-keys"),
            "post": operation(
                "createAPIKey", "Create an API key (shown once)", ok: 201, schema: "CreatedAPIKey",
                body: body(
                    object(
                        [
                            "name": nonEmpty, "scope": ["type": "string", "enum": ["read", "write"]],
                            "projectId": nullable(["type": "string", "pattern": "^prj_[0-9a-hjkmnp-tv-z]{26}$"]),
                            "expiresInDays": nullable(["type": "integer", "minimum": 1, "maximum": 3650]),
                        ],
                        required: ["name", "scope"])),
                parameters: [path("orgId")], tag: "api-keys"),
        ],
        "/api/v1/orgs/{orgId}/api-keys/{keyId}": [
            "delete": operation(
                "revokeAPIKey", "Revoke an API key", ok: 204, schema: nil,
                parameters: [path("orgId"), path("keyId")], tag: "api-keys")
        ],
        "/api/v1/orgs/{orgId}/audit-events": [
            "get": operation(
                "listAuditEvents", "Audit events, newest first", ok: 200, schema: "AuditEventList",
                parameters: [
                    path("orgId"), query("action", string), query("actorId", string), query("resourceId", string),
                    query("since", dateTime), query("until", dateTime),
                    query("cursor", ["type": "string", "pattern": "^[1-9][0-9]{0,17}$"]),
                    query("limit", ["type": "integer", "minimum": 1, "maximum": 200]),
                ], tag: "audit")
        ],
    ]

    /// Workflows, executions and webhooks.
    nonisolated(unsafe) static let enginePaths: [String: Object] = {
        let workflowID = [path("workflowId")]
        let executionID = [path("executionId")]
        let page = [query("cursor", string), query("limit", ["type": "integer", "minimum": 1, "maximum": 200])]
        let anyBody: Object = ["description": "What the workflow answers", "content": ["application/json": ["schema": [String: Any]()]]]
        var webhook: Object = [:]
        for method in ["get", "post", "put", "patch", "delete", "head"] {
            var op = operation(
                "webhook\(method.capitalized)", "Start the active workflow serving this path", ok: 200, schema: nil,
                parameters: [path("path")], secured: false, tag: "webhooks")
            var responses = op["responses"] as! Object
            responses["200"] = anyBody
            op["responses"] = responses
            if method != "get" && method != "head" {
                op["requestBody"] = [
                    "required": false,
                    "content": [
                        "application/json": ["schema": [String: Any]()],
                        "application/x-www-form-urlencoded": ["schema": ["type": "object"]],
                        "text/plain": ["schema": string],
                    ],
                ]
            }
            webhook[method] = op
        }
        return [
            "/api/v1/projects/{projectId}/workflows": [
                "get": operation(
                    "listWorkflows", "Workflows of a project", ok: 200, schema: "WorkflowList", parameters: [path("projectId")] + page,
                    tag: "workflows"),
                "post": operation(
                    "createWorkflow", "Create a workflow (validated; version 1)", ok: 201, schema: "Workflow",
                    body: body(ref("WorkflowInput")), parameters: [path("projectId")], tag: "workflows"),
            ],
            "/api/v1/workflows/{workflowId}": [
                "get": operation(
                    "getWorkflow", "A workflow's current version", ok: 200, schema: "Workflow", parameters: workflowID, tag: "workflows"),
                "put": operation(
                    "updateWorkflow", "Save a new version (versionId: the version it is based on; 409 when stale)", ok: 200,
                    schema: "Workflow",
                    body: body(ref("WorkflowInput")), parameters: workflowID, tag: "workflows"),
                "delete": operation("deleteWorkflow", "Delete a workflow", ok: 204, schema: nil, parameters: workflowID, tag: "workflows"),
            ],
            "/api/v1/workflows/{workflowId}/versions": [
                "get": operation(
                    "listWorkflowVersions", "Saved versions, newest first", ok: 200,
                    schema: "WorkflowVersionList", parameters: workflowID, tag: "workflows")
            ],
            "/api/v1/workflows/{workflowId}/activate": [
                "post": operation(
                    "activateWorkflow", "Serve its webhooks and schedules", ok: 200,
                    schema: "Workflow", parameters: workflowID, tag: "workflows")
            ],
            "/api/v1/workflows/{workflowId}/deactivate": [
                "post": operation(
                    "deactivateWorkflow", "Stop serving its webhooks and schedules", ok: 200,
                    schema: "Workflow", parameters: workflowID, tag: "workflows")
            ],
            "/api/v1/workflows/{workflowId}/run": [
                "post": [
                    "operationId": "runWorkflow",
                    "summary": "Run by hand: 200 with the result when wait=true, else 202 with the execution id",
                    "tags": ["workflows"],
                    "parameters": workflowID + [
                        query("wait", ["type": "string", "enum": ["true", "false"]]),
                        [
                            "name": "Idempotency-Key", "in": "header", "required": false,
                            "description": "A repeat with the same key for this workflow within 24 h answers with the first execution",
                            "schema": ["type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"],
                        ] as Object,
                    ],
                    "requestBody": body(
                        object(["items": ["type": "array", "maxItems": 10000, "items": ["type": "object"]]], required: []), required: false),
                    "security": [["apiKey": [String]()], ["session": [String]()]],
                    "responses": [
                        "200": ["description": "The result", "content": ["application/json": ["schema": ref("RunResult")]]],
                        "202": ["description": "Accepted", "content": ["application/json": ["schema": ref("RunAccepted")]]],
                        "default": ["description": "Error", "content": ["application/json": ["schema": ref("Error")]]],
                    ],
                ] as Object
            ],
            "/api/v1/node-types": [
                "get": operation("listNodeTypes", "Node types and their parameters", ok: 200, schema: "NodeTypeList", tag: "workflows")
            ],
            "/api/v1/projects/{projectId}/executions": [
                "get": operation(
                    "listExecutions", "Executions, newest first", ok: 200, schema: "ExecutionList",
                    parameters: [
                        path("projectId"),
                        query("status", ["type": "string", "enum": ["queued", "running", "waiting", "succeeded", "failed", "cancelled"]]),
                        query("mode", ["type": "string", "enum": ["manual", "webhook", "schedule", "sub-workflow", "retry", "error"]]),
                        query("workflowId", string),
                    ] + page, tag: "executions")
            ],
            "/api/v1/executions/{executionId}": [
                "get": operation(
                    "getExecution", "An execution, with node data when the caller may run the workflow", ok: 200, schema: "Execution",
                    parameters: executionID, tag: "executions"),
                "delete": operation(
                    "deleteExecution", "Delete a finished execution", ok: 204, schema: nil, parameters: executionID, tag: "executions"),
            ],
            "/api/v1/executions/{executionId}/retry": [
                "post": operation(
                    "retryExecution", "Retry a failed execution from the failed node", ok: 202,
                    schema: "RunAccepted", parameters: executionID, tag: "executions")
            ],
            "/api/v1/executions/{executionId}/cancel": [
                "post": operation(
                    "cancelExecution", "Cancel an unfinished execution", ok: 200,
                    schema: "Execution", parameters: executionID, tag: "executions")
            ],
            "/webhook-waiting/{executionId}/{token}": [
                "post": {
                    var op = operation(
                        "resumeExecution",
                        "Resume an execution waiting in a Wait node for a resume call (the call becomes the node's output). "
                            + "The URL is the execution's resumeUrl, shown to members who may run it; a wrong token is not found.",
                        ok: 200, schema: "Resumed", parameters: executionID + [path("token")], secured: false, tag: "webhooks")
                    op["requestBody"] = [
                        "required": false,
                        "content": [
                            "application/json": ["schema": [String: Any]()],
                            "application/x-www-form-urlencoded": ["schema": ["type": "object"]],
                            "text/plain": ["schema": string],
                        ],
                    ]
                    return op
                }()
            ],
            "/webhook/{path}": webhook,
            "/api/v1/projects/{projectId}/variables": [
                "get": operation(
                    "listVariables", "Project variables ($env in expressions and Code nodes)", ok: 200, schema: "VariableList",
                    parameters: [path("projectId")], tag: "variables"),
                "post": operation(
                    "createVariable", "Create a variable (value sealed at rest)", ok: 201, schema: "Variable",
                    body: body(
                        object([
                            "name": ["type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"],
                            "value": ["type": "string", "maxLength": 65536],
                        ])),
                    parameters: [path("projectId")], tag: "variables"),
            ],
            "/api/v1/projects/{projectId}/connections": [
                "get": operation(
                    "listConnections", "Connections of a project (secrets shown as hints only)", ok: 200, schema: "ConnectionList",
                    parameters: [path("projectId")], tag: "connections"),
                "post": operation(
                    "createConnection", "Create a connection (secret fields are write-only, sealed with the connections key)",
                    ok: 201, schema: "Connection", body: body(connectionInput(create: true)), parameters: [path("projectId")],
                    tag: "connections"),
            ],
            "/api/v1/connections/{connectionId}": [
                "get": operation(
                    "getConnection", "A connection", ok: 200, schema: "Connection", parameters: [path("connectionId")], tag: "connections"),
                "patch": operation(
                    "updateConnection", "Rename it or replace fields (omitted secrets are kept; null removes an optional field)",
                    ok: 200, schema: "Connection", body: body(connectionInput(create: false)), parameters: [path("connectionId")],
                    tag: "connections"),
                "delete": operation(
                    "deleteConnection", "Delete a connection", ok: 204, schema: nil, parameters: [path("connectionId")], tag: "connections"),
            ],
            "/api/v1/connections/{connectionId}/test": [
                "post": operation(
                    "testConnection", "Try the credential against a URL (or the OAuth2 token endpoint)", ok: 200, schema: "ConnectionTest",
                    body: body(object(["url": ["type": "string", "maxLength": 2048]], required: []), required: false),
                    parameters: [path("connectionId")], tag: "connections")
            ],
            "/api/v1/connections/{connectionId}/oauth2/authorize": [
                "get": redirect(
                    "authorizeConnection", "Start the OAuth2 authorization code flow with PKCE (browser session only): 302 to the provider",
                    parameters: [path("connectionId")], secured: true)
            ],
            "/oauth2/callback": [
                "get": operation(
                    "oauth2Callback", "The provider's redirect back (state bound to the starting session and browser)", ok: 200,
                    schema: "OAuth2Connected",
                    parameters: [query("state", string), query("code", string), query("error", string)], secured: false, tag: "connections")
            ],
            "/api/v1/orgs/{orgId}/security-report": [
                "get": operation(
                    "securityReport",
                    "Hard-coded credentials, keys due for rotation, connections never tested or failing (owners and admins)",
                    ok: 200, schema: "SecurityReport", parameters: [path("orgId")], tag: "security")
            ],
            "/api/v1/projects/{projectId}/variables/{name}": [
                "patch": operation(
                    "updateVariable", "Change a variable's value", ok: 200, schema: "Variable",
                    body: body(object(["value": ["type": "string", "maxLength": 65536]])),
                    parameters: [path("projectId"), path("name")], tag: "variables"),
                "delete": operation(
                    "deleteVariable", "Delete a variable", ok: 204, schema: nil,
                    parameters: [path("projectId"), path("name")], tag: "variables"),
            ],
        ]
    }()

    nonisolated(unsafe) static let document: Object = [
        "openapi": "3.1.0",
        "info": [
            "title": "FlowStack API", "version": "1.0.0",
            "description":
                "Self-hostable workflow automation. Authenticate with 'Authorization: Bearer fsk_…' or the session cookie plus X-CSRF-Token.",
        ],
        "servers": [["url": "/"]],
        "paths": paths.merging(enginePaths) { a, _ in a },
        "components": [
            "schemas": schemas,
            "securitySchemes": [
                "apiKey": ["type": "http", "scheme": "bearer", "description": "An API key: fsk_…"],
                "session": ["type": "apiKey", "in": "cookie", "name": "__Host-flowstack_session"],
            ],
        ],
    ]
}

import Foundation

/// One thing wrong with a workflow, naming the node and field.
public struct WorkflowProblem: Sendable, Equatable, Codable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var node: String?
    public var field: String?

    public init(_ code: String, _ message: String, node: String? = nil, field: String? = nil) {
        self.code = code
        self.message = message
        self.node = node
        self.field = field
    }

    public var description: String {
        var prefix = ""
        if let node { prefix += "node '\(node)'" }
        if let field { prefix += (prefix.isEmpty ? "" : ", ") + "field '\(field)'" }
        return prefix.isEmpty ? message : "\(prefix): \(message)"
    }
}

/// Checks a workflow against the node catalog and reports every problem, not just the first.
public enum WorkflowValidator {
    public static func validate(_ workflow: Workflow, catalog: [String: NodeTypeDescriptor]) -> [WorkflowProblem] {
        var problems: [WorkflowProblem] = []
        if workflow.name.trimmingCharacters(in: .whitespaces).isEmpty {
            problems.append(.init("missing_name", "The workflow needs a name.", field: "name"))
        }
        if workflow.nodes.isEmpty {
            problems.append(.init("no_nodes", "The workflow has no nodes.", field: "nodes"))
        }
        var seen = Set<String>()
        var descriptors: [String: NodeTypeDescriptor] = [:]
        for (index, node) in workflow.nodes.enumerated() {
            if node.name.trimmingCharacters(in: .whitespaces).isEmpty {
                problems.append(.init("missing_node_name", "Node \(index + 1) has no name.", field: "nodes[\(index)].name"))
                continue
            }
            if !seen.insert(node.name).inserted {
                problems.append(
                    .init("duplicate_node_name", "Another node is already called '\(node.name)'.", node: node.name, field: "name"))
            }
            guard let descriptor = catalog[node.type] else {
                problems.append(.init("unknown_node_type", "Unknown node type '\(node.type)'.", node: node.name, field: "type"))
                continue
            }
            guard descriptor.versions.contains(node.typeVersion) else {
                let versions = descriptor.versions.sorted().map(String.init).joined(separator: ", ")
                problems.append(
                    .init(
                        "unknown_type_version", "'\(node.type)' has no version \(node.typeVersion) (versions: \(versions)).",
                        node: node.name, field: "typeVersion"))
                continue
            }
            descriptors[node.name] = descriptor
            problems += parameterProblems(node, descriptor)
            problems += settingProblems(node)
        }
        if !workflow.nodes.isEmpty && !descriptors.values.contains(where: \.isTrigger)
            && problems.allSatisfy({ $0.code != "unknown_node_type" })
        {
            problems.append(.init("no_trigger", "The workflow needs a trigger node (manual, webhook, schedule, …).", field: "nodes"))
        }
        for (index, edge) in workflow.edges.enumerated() {
            let field = "edges[\(index)]"
            guard seen.contains(edge.from) else {
                problems.append(.init("dangling_edge", "The edge starts at '\(edge.from)', which is not a node.", field: field + ".from"))
                continue
            }
            guard seen.contains(edge.to) else {
                problems.append(
                    .init(
                        "dangling_edge", "The edge from '\(edge.from)' goes to '\(edge.to)', which is not a node.", node: edge.from,
                        field: field + ".to"))
                continue
            }
            if let source = descriptors[edge.from], let outputs = source.outputs ?? outputCount(workflow.node(named: edge.from)!),
                edge.output < 0 || edge.output >= outputs + (workflow.node(named: edge.from)!.onError == .errorOutput ? 1 : 0)
            {
                problems.append(
                    .init("invalid_output", "'\(edge.from)' has no output \(edge.output).", node: edge.from, field: field + ".output"))
            }
            if let target = descriptors[edge.to] {
                if target.inputs == 0 {
                    problems.append(
                        .init("edge_into_trigger", "'\(edge.to)' is a trigger and takes no input.", node: edge.to, field: field + ".to"))
                } else if edge.input < 0 || edge.input >= target.inputs {
                    problems.append(
                        .init("invalid_input", "'\(edge.to)' has no input \(edge.input).", node: edge.to, field: field + ".input"))
                }
            }
        }
        if let cycle = findCycle(workflow) {
            problems.append(.init("cycle", "The edges form a cycle: \(cycle.joined(separator: " → ")).", node: cycle.first, field: "edges"))
        }
        if let zone = workflow.settings.timezone, TimeZone(identifier: zone) == nil {
            problems.append(
                .init(
                    "invalid_timezone", "'\(zone)' is not a time zone (use an IANA name such as Europe/Berlin).", field: "settings.timezone"
                ))
        }
        if let timeout = workflow.settings.timeout, !(timeout > 0) {
            problems.append(.init("invalid_timeout", "The timeout must be a positive number of seconds.", field: "settings.timeout"))
        }
        if let save = workflow.settings.saveExecutionData, !["all", "errors", "none"].contains(save) {
            problems.append(.init("invalid_option", "saveExecutionData is one of all, errors, none.", field: "settings.saveExecutionData"))
        }
        return problems
    }

    /// Outputs of a node whose count depends on its parameters (Switch: one per rule, plus fallback).
    public static func outputCount(_ node: WorkflowNode) -> Int? {
        if case .array(let rules) = node.parameters["rules"] ?? .null { return rules.count + 1 }
        return nil
    }

    static func settingProblems(_ node: WorkflowNode) -> [WorkflowProblem] {
        var problems: [WorkflowProblem] = []
        if !(1...10).contains(node.maxTries) {
            problems.append(.init("invalid_setting", "maxTries must be between 1 and 10.", node: node.name, field: "maxTries"))
        }
        if !(0...300_000).contains(node.waitBetweenTries) {
            problems.append(
                .init("invalid_setting", "waitBetweenTries must be between 0 and 300000 ms.", node: node.name, field: "waitBetweenTries"))
        }
        if let timeout = node.timeout, !(timeout > 0) {
            problems.append(
                .init("invalid_setting", "The timeout must be a positive number of seconds.", node: node.name, field: "timeout"))
        }
        return problems
    }

    static func parameterProblems(_ node: WorkflowNode, _ descriptor: NodeTypeDescriptor) -> [WorkflowProblem] {
        var problems: [WorkflowProblem] = []
        for parameter in descriptor.parameters {
            let value = node.parameters[parameter.name]
            let field = "parameters.\(parameter.name)"
            guard let value, value != .null, value != .string("") else {
                if parameter.required {
                    problems.append(
                        .init("missing_parameter", "The parameter '\(parameter.name)' is required.", node: node.name, field: field))
                }
                continue
            }
            // An expression is checked when it runs; a parameter with its own check decides itself.
            if case .string(let text) = value, Template.containsExpression(text), parameter.check == nil { continue }
            switch parameter.kind {
            case .options:
                if case .string(let text) = value, !parameter.options.contains(text) {
                    problems.append(
                        .init(
                            "invalid_option", "'\(text)' is not one of \(parameter.options.joined(separator: ", ")).", node: node.name,
                            field: field))
                }
            case .cron:
                if case .string(let text) = value {
                    do { _ = try CronExpression(text) } catch {
                        problems.append(
                            .init("invalid_cron", "Invalid cron expression: \(error.description).", node: node.name, field: field))
                    }
                }
            case .number:
                if case .number = value {
                } else {
                    problems.append(
                        .init("invalid_parameter", "The parameter '\(parameter.name)' must be a number.", node: node.name, field: field))
                }
            case .boolean:
                if case .bool = value {
                } else {
                    problems.append(
                        .init(
                            "invalid_parameter", "The parameter '\(parameter.name)' must be true or false.", node: node.name, field: field))
                }
            case .json:
                for problem in parameter.check?(value) ?? [] {
                    problems.append(
                        .init(
                            "invalid_parameter", problem.message, node: node.name,
                            field: problem.field.isEmpty
                                ? field : problem.field.hasPrefix("[") ? field + problem.field : "\(field).\(problem.field)"))
                }
            default: break
            }
        }
        if descriptor.parameters.first(where: { $0.kind == .code }) == nil {
            problems += expressionProblems(node.parameters.mapValues { $0 }, node: node.name, path: "parameters")
        } else {
            let nonCode = node.parameters.filter { key, _ in !descriptor.parameters.contains { $0.name == key && $0.kind == .code } }
            problems += expressionProblems(nonCode, node: node.name, path: "parameters")
        }
        return problems
    }

    /// Every string containing `{{` must parse as a template.
    static func expressionProblems(_ object: [String: JSONValue], node: String, path: String) -> [WorkflowProblem] {
        var problems: [WorkflowProblem] = []
        func visit(_ value: JSONValue, _ path: String) {
            switch value {
            case .string(let text) where Template.containsExpression(text):
                do { _ = try Template(text) } catch {
                    problems.append(.init("expression_syntax", "Expression error: \(error.description).", node: node, field: path))
                }
            case .array(let items):
                for (i, item) in items.enumerated() { visit(item, "\(path)[\(i)]") }
            case .object(let fields):
                for (key, item) in fields.sorted(by: { $0.key < $1.key }) { visit(item, "\(path).\(key)") }
            default: break
            }
        }
        for (key, value) in object.sorted(by: { $0.key < $1.key }) { visit(value, "\(path).\(key)") }
        return problems
    }

    /// A cycle among the edges, as the node names along it, if there is one.
    static func findCycle(_ workflow: Workflow) -> [String]? {
        var adjacency: [String: [String]] = [:]
        for edge in workflow.edges { adjacency[edge.from, default: []].append(edge.to) }
        var state: [String: Int] = [:] // 1 visiting, 2 done
        var stack: [String] = []
        func visit(_ node: String) -> [String]? {
            state[node] = 1
            stack.append(node)
            for next in adjacency[node] ?? [] {
                if state[next] == 1, let start = stack.firstIndex(of: next) { return Array(stack[start...]) + [next] }
                if state[next] == nil, let cycle = visit(next) { return cycle }
            }
            stack.removeLast()
            state[node] = 2
            return nil
        }
        for node in workflow.nodes.map(\.name) where state[node] == nil {
            if let cycle = visit(node) { return cycle }
        }
        return nil
    }
}

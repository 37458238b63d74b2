import ArgumentParser
import FlowStackCore
import FlowStackEngine
import FlowStackNetwork
import FlowStackNodes
import FlowStackRuntime
import FlowStackSandbox
import Foundation

/// Reads a workflow file, with decoding errors that name the field.
func loadWorkflow(_ path: String) throws -> Workflow {
    guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
    do {
        return try JSONDecoder().decode(Workflow.self, from: data)
    } catch let error as DecodingError {
        switch error {
        case .keyNotFound(let key, let context):
            let path = (context.codingPath + [key]).map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            throw ValidationError("\(path): required field is missing")
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            throw ValidationError("\(path.isEmpty ? "workflow" : path): \(context.debugDescription)")
        @unknown default:
            throw ValidationError("the workflow is not valid JSON")
        }
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check a workflow file and print every problem (exit 1 when there are any).")
    @Argument(help: "The workflow JSON file.") var file: String

    func run() throws {
        let problems = WorkflowValidator.validate(try loadWorkflow(file), catalog: NodeCatalog.standard.descriptors)
        if problems.isEmpty {
            print("\(file): valid")
            return
        }
        for problem in problems { print("\(file): \(problem.description) [\(problem.code)]") }
        throw ExitCode(1)
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Run a workflow locally, without a server: prints the last node's output items as JSON and a per-node summary on standard error."
    )
    @Argument(help: "The workflow JSON file.") var file: String
    @Option(help: "Input items: a JSON file, or - for standard input (an object or an array of objects).") var input: String?

    func run() async throws {
        let workflow = try loadWorkflow(file)
        var items = [Item(json: .object([:]))]
        if let input {
            items = try Self.inputItems(input)
        }
        let result: RunResult
        do {
            // Code nodes run in the sandbox next to this binary; HTTP requests go through the default SSRF guard.
            var codeRunner: SandboxPool?
            if workflow.nodes.contains(where: { $0.type == CodeNode.descriptor.type }), let path = SandboxPool.defaultExecutable() {
                codeRunner = SandboxPool(
                    executable: path,
                    limits: {
                        var l = SandboxLimits()
                        l.warm = 0
                        return l
                    }())
            }
            let services = StandaloneServices(codeRunner: codeRunner, fetcher: GuardedHTTPClient(policy: .default))
            result = try await LocalRunner(catalog: .standard, services: services).run(workflow, input: items)
            await codeRunner?.shutdown()
        } catch let error as LocalRunner.InvalidWorkflow {
            for problem in error.problems {
                FileHandle.standardError.write(Data("\(file): \(problem.description) [\(problem.code)]\n".utf8))
            }
            throw ExitCode(2)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(result.output.map(\.json)), as: UTF8.self))
        var summary = ""
        for node in result.nodes {
            func pad(_ text: String, _ width: Int) -> String {
                text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
            }
            summary +=
                pad(node.node, 24) + " " + pad(node.status, 9)
                + String(format: " %5d items  %2d tries  %8.2f ms", node.items, node.attempts, node.milliseconds)
            if let error = node.error { summary += "  \(error)" }
            summary += "\n"
        }
        summary += "status: \(result.status.rawValue)" + (result.error.map { " — \($0)" } ?? "") + "\n"
        FileHandle.standardError.write(Data(summary.utf8))
        if result.status != .succeeded { throw ExitCode(1) }
    }

    /// The items of an input file (or standard input for "-"). The text is read into one buffer
    /// and dropped once parsed, so a large input is in memory once as text, briefly, and once as items.
    static func inputItems(_ input: String) throws -> [Item] {
        let value: JSONValue
        do {
            let bytes: [UInt8]
            if input == "-" {
                bytes = try readAll(FileHandle.standardInput)
            } else {
                guard let file = FileHandle(forReadingAtPath: input) else { throw ValidationError("cannot read the input file \(input)") }
                defer { try? file.close() }
                bytes = try readAll(file)
            }
            // The same strict parser as webhook bodies (not JSONDecoder): the same JSON is accepted
            // everywhere, and a million items parse in seconds.
            do { value = try JSONValue(parsing: bytes) } catch { throw ValidationError("the input is not valid JSON: \(error)") }
        }
        let values = value.arrayValue ?? [value]
        guard values.allSatisfy({ $0.objectValue != nil }) else {
            throw ValidationError("the input must be an object or an array of objects")
        }
        return values.map { Item(json: $0) }
    }

    /// Everything left in `file`, appended to one byte array (no `Data` copy next to it).
    private static func readAll(_ file: FileHandle) throws -> [UInt8] {
        var bytes: [UInt8] = []
        let descriptor = file.fileDescriptor
        var status = stat()
        if fstat(descriptor, &status) == 0, status.st_size > 0 { bytes.reserveCapacity(Int(status.st_size) + 1) }
        while true {
            // Into the room already reserved (a file's size and one byte to see its end), so the
            // buffer never doubles at the end of a file.
            let room = max(bytes.capacity - bytes.count, 1 << 16)
            let start = bytes.count
            bytes.append(contentsOf: repeatElement(0, count: room))
            let count = bytes.withUnsafeMutableBytes { buffer in
                read(descriptor, buffer.baseAddress! + start, room)
            }
            if count < 0 {
                bytes.removeLast(room)
                if errno == EINTR { continue }
                throw ValidationError("cannot read the input: \(String(cString: strerror(errno)))")
            }
            bytes.removeLast(room - count)
            if count == 0 { return bytes }
        }
    }
}

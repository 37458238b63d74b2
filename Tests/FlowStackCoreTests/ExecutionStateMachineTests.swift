import FlowStackCore
import Foundation
import Testing

@Suite struct ExecutionStateMachineTests {
    func node(_ name: String, retry: Bool = false, tries: Int = 3, wait: Int = 100, onError: OnError = .stop) -> WorkflowNode {
        WorkflowNode(name: name, type: "t", retryOnFail: retry, maxTries: tries, waitBetweenTries: wait, onError: onError)
    }

    let items = [Item(json: ["n": 1]), Item(json: ["n": 2])]

    func runs(_ actions: [ExecutionAction]) -> [String] {
        actions.compactMap { if case .runNode(let node, _, _) = $0 { node } else { nil } }
    }

    @Test("a chain runs node by node and finishes with the last node's items")
    func chain() {
        var machine = ExecutionStateMachine(
            workflow: Workflow(
                name: "w", nodes: [node("T"), node("A"), node("B")],
                edges: [Edge(from: "T", to: "A"), Edge(from: "A", to: "B")]))
        let first = machine.handle(.start(trigger: "T", items: items))
        #expect(first == [.runNode(node: "A", inputs: [items], attempt: 1)])
        #expect(machine.status == .running)
        #expect(runs(machine.handle(.nodeSucceeded(node: "A", outputs: [[Item(json: ["a": true])]]))) == ["B"])
        let done = machine.handle(.nodeSucceeded(node: "B", outputs: [[Item(json: ["b": true])]]))
        #expect(done == [.finish(status: .succeeded, error: nil, failedNode: nil)])
        #expect(machine.finalOutput == [Item(json: ["b": true])])
        // Late or duplicate events change nothing once finished.
        #expect(machine.handle(.nodeSucceeded(node: "B", outputs: [[]])) == [])
    }

    @Test("the untaken If branch is skipped, and so is everything only it feeds")
    func branches() {
        let wf = Workflow(
            name: "w", nodes: [node("T"), node("If"), node("Yes"), node("No"), node("AfterNo")],
            edges: [
                Edge(from: "T", to: "If"), Edge(from: "If", to: "Yes", output: 0), Edge(from: "If", to: "No", output: 1),
                Edge(from: "No", to: "AfterNo"),
            ])
        var machine = ExecutionStateMachine(workflow: wf)
        _ = machine.handle(.start(trigger: "T", items: items))
        let next = machine.handle(.nodeSucceeded(node: "If", outputs: [items, []]))
        #expect(runs(next) == ["Yes"])
        #expect(machine.skipped == ["No", "AfterNo"])
        #expect(
            machine.handle(.nodeSucceeded(node: "Yes", outputs: [items])).last == .finish(status: .succeeded, error: nil, failedNode: nil))
    }

    @Test("parallel branches are returned together; a merge waits for both inputs")
    func parallelAndMerge() {
        let wf = Workflow(
            name: "w", nodes: [node("T"), node("H1"), node("H2"), node("H3"), node("Merge")],
            edges: [
                Edge(from: "T", to: "H1"), Edge(from: "T", to: "H2"), Edge(from: "T", to: "H3"),
                Edge(from: "H1", to: "Merge", input: 0), Edge(from: "H2", to: "Merge", input: 1), Edge(from: "H3", to: "Merge", input: 1),
            ])
        var machine = ExecutionStateMachine(workflow: wf)
        #expect(Set(runs(machine.handle(.start(trigger: "T", items: items)))) == ["H1", "H2", "H3"])
        #expect(machine.handle(.nodeSucceeded(node: "H2", outputs: [[Item(json: "h2")]])) == [])
        #expect(machine.handle(.nodeSucceeded(node: "H1", outputs: [[Item(json: "h1")]])) == [])
        let merge = machine.handle(.nodeSucceeded(node: "H3", outputs: [[Item(json: "h3")]]))
        #expect(merge == [.runNode(node: "Merge", inputs: [[Item(json: "h1")], [Item(json: "h2"), Item(json: "h3")]], attempt: 1)])
    }

    @Test("retries back off exponentially, then the node's error setting decides")
    func retries() {
        var machine = ExecutionStateMachine(
            workflow: Workflow(
                name: "w", nodes: [node("T"), node("A", retry: true, tries: 3, wait: 100)],
                edges: [Edge(from: "T", to: "A")]))
        _ = machine.handle(.start(trigger: "T", items: items))
        #expect(machine.handle(.nodeFailed(node: "A", error: "boom")) == [.scheduleRetry(node: "A", afterMilliseconds: 100)])
        #expect(machine.handle(.retryDue(node: "A")) == [.runNode(node: "A", inputs: [items], attempt: 2)])
        #expect(machine.handle(.nodeFailed(node: "A", error: "boom")) == [.scheduleRetry(node: "A", afterMilliseconds: 200)])
        #expect(machine.handle(.retryDue(node: "A")) == [.runNode(node: "A", inputs: [items], attempt: 3)])
        #expect(machine.handle(.nodeFailed(node: "A", error: "boom")) == [.finish(status: .failed, error: "boom", failedNode: "A")])
        #expect(machine.status == .failed && machine.failedNode == "A")
    }

    @Test("continue passes an error item on; errorOutput routes the input items to the error output")
    func errorHandling() {
        var cont = ExecutionStateMachine(
            workflow: Workflow(
                name: "w", nodes: [node("T"), node("A", onError: .continue), node("B")],
                edges: [Edge(from: "T", to: "A"), Edge(from: "A", to: "B")]))
        _ = cont.handle(.start(trigger: "T", items: items))
        #expect(
            cont.handle(.nodeFailed(node: "A", error: "bad")) == [.runNode(node: "B", inputs: [[Item(json: ["error": "bad"])]], attempt: 1)]
        )

        let wf = Workflow(
            name: "w", nodes: [node("T"), node("If", onError: .errorOutput), node("Ok"), node("Else"), node("Err")],
            edges: [
                Edge(from: "T", to: "If"), Edge(from: "If", to: "Ok", output: 0), Edge(from: "If", to: "Else", output: 1),
                Edge(from: "If", to: "Err", output: 2),
            ])
        var routed = ExecutionStateMachine(workflow: wf, outputCounts: ["If": 2])
        _ = routed.handle(.start(trigger: "T", items: [Item(json: ["n": 1])]))
        let next = routed.handle(.nodeFailed(node: "If", error: "bad"))
        #expect(next == [.runNode(node: "Err", inputs: [[Item(json: ["n": 1, "error": "bad"])]], attempt: 1)])
        #expect(routed.skipped == ["Ok", "Else"])
    }

    @Test("wait sleeps and resumes; cancel and timeout end the execution")
    func waitCancelTimeout() {
        let wf = Workflow(
            name: "w", nodes: [node("T"), node("Wait"), node("After")],
            edges: [Edge(from: "T", to: "Wait"), Edge(from: "Wait", to: "After")])
        var machine = ExecutionStateMachine(workflow: wf)
        _ = machine.handle(.start(trigger: "T", items: items))
        let until = Date(timeIntervalSince1970: 2_000_000_000)
        #expect(machine.handle(.nodeWaiting(node: "Wait", until: until, items: items)) == [.sleep(node: "Wait", until: until)])
        #expect(machine.status == .waiting)
        #expect(runs(machine.handle(.resumed(node: "Wait", outputs: [items]))) == ["After"])

        var cancelled = machine
        #expect(cancelled.handle(.cancel) == [.finish(status: .cancelled, error: nil, failedNode: nil)])
        var timed = machine
        #expect(timed.handle(.timedOut) == [.finish(status: .failed, error: "The workflow exceeded its timeout.", failedNode: "After")])
    }

    @Test("the state round-trips through JSON, so a checkpoint resumes exactly")
    func checkpoint() throws {
        var machine = ExecutionStateMachine(
            workflow: Workflow(
                name: "w", nodes: [node("T"), node("A"), node("B")],
                edges: [Edge(from: "T", to: "A"), Edge(from: "A", to: "B")]))
        _ = machine.handle(.start(trigger: "T", items: items))
        _ = machine.handle(.nodeSucceeded(node: "A", outputs: [items]))
        var restored = try JSONDecoder().decode(ExecutionStateMachine.self, from: JSONEncoder().encode(machine))
        #expect(restored == machine)
        #expect(restored.running == ["B"])
        #expect(restored.handle(.nodeSucceeded(node: "B", outputs: [[]])) == [.finish(status: .succeeded, error: nil, failedNode: nil)])
    }
}

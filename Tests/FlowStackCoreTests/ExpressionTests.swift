import FlowStackCore
import Foundation
import Testing

/// The expression language as a table of (expression, expected JSON result).
@Suite struct ExpressionTableTests {
    static let item: JSONValue = [
        "body": ["name": "Ada", "age": 36, "tags": ["math", "code"], "nested": ["deep": ["x": 1]]],
        "price": 19.99, "qty": 3, "empty": "", "zero": 0, "none": nil, "flag": true,
        "list": [3, 1, 2], "people": [["n": "a", "age": 30], ["n": "b", "age": 17], ["n": "c", "age": 45]],
        "with space": "yes", "num": "42",
    ]

    static let context = ExpressionContext(
        json: item, inputItems: [item, ["body": ["name": "Bob"]]], itemIndex: 0,
        nodeOutputs: [
            "Webhook": [Item(json: ["method": "POST"]), Item(json: ["method": "GET"])], "Set Name": [Item(json: ["name": "Ada"])],
        ],
        variables: ["REGION": "eu", "LIMIT": "10"],
        now: Date(timeIntervalSince1970: 1_800_000_000), executionID: "exe_1", workflowID: "wf_1", workflowName: "Greet"
    )

    static let cases: [(String, JSONValue)] = [
        // Literals and arithmetic
        ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("10 / 4", 2.5), ("7 % 3", 1), ("2 ** 10", 1024), ("2 ** 3 ** 2", 512),
        ("-5 + +'3'", -2), ("0x1f", 31), ("1_000", 1000), ("1e3", 1000), (".5 + .5", 1),
        ("'a' + 'b'", "ab"), ("\"x\" + 1", "x1"), ("1 + '1'", "11"), ("'3' * '4'", 12), ("'a\\nb'", "a\nb"),
        ("null", nil), ("true && 'yes'", "yes"), ("0 || 'fallback'", "fallback"), ("null ?? 'd'", "d"), ("0 ?? 'd'", 0),
        ("undefined ?? 5", 5), ("!0", true), ("!!'x'", true), ("typeof 1", "number"), ("typeof 'x'", "string"),
        ("typeof $json.missing", "undefined"), ("typeof $json.body", "object"), ("typeof (x => x)", "function"),
        // Comparison
        ("1 < 2", true), ("'b' > 'a'", true), ("2 >= 2", true), ("1 === 1", true), ("1 == '1'", true), ("1 === '1'", false),
        ("null == undefined", true), ("null === undefined", false), ("'a' != 'b'", true), ("'x' in $json", false), ("'qty' in $json", true),
        // Ternary
        ("$json.qty > 2 ? 'many' : 'few'", "many"), ("$json.zero ? 1 : 2", 2), ("true ? false ? 1 : 2 : 3", 2),
        // Paths
        ("$json.body.name", "Ada"), ("$json['body']['age']", 36), ("$json.body.tags[1]", "code"), ("$json.body.tags.length", 2),
        ("$json['with space']", "yes"), ("$json.body.nested.deep.x", 1), ("$json.missing?.deep", nil), ("$json.none?.x", nil),
        ("$json.missing?.[0]", nil), ("$json.body?.name", "Ada"), ("$json.list[5]", nil), ("$json.body.name[0]", "A"),
        // Template literals
        ("`Hi ${$json.body.name}!`", "Hi Ada!"), ("`${1 + 1} and ${'x'.toUpperCase()}`", "2 and X"), ("`a${`b${'c'}`}`", "abc"),
        ("`{ ${ {a: 1}.a } }`", "{ 1 }"),
        // Arrays and objects
        ("[1, 2, 3].length", 3), ("[1, [2, 3]].flat()", [1, 2, 3]), ("({a: 1, b: 'x'}).b", "x"), ("({'k': 2}).k", 2),
        ("({[`k${1}`]: true})", ["k1": true]), ("[...'ab'].length", nil),
        // Array methods
        ("$json.list.map(x => x * 2)", [6, 2, 4]), ("$json.list.filter(x => x > 1)", [3, 2]), ("$json.list.some(x => x > 2)", true),
        ("$json.list.every(x => x > 2)", false), ("$json.people.find(p => p.age > 40).n", "c"),
        ("$json.people.findIndex(p => p.n === 'b')", 1),
        ("$json.list.reduce((a, b) => a + b, 0)", 6), ("$json.list.reduce((a, b) => a + b)", 6), ("$json.list.includes(2)", true),
        ("$json.list.indexOf(2)", 2), ("$json.list.join('-')", "3-1-2"), ("$json.list.slice(1)", [1, 2]), ("$json.list.slice(-1)", [2]),
        ("$json.list.concat([4], 5)", [3, 1, 2, 4, 5]), ("$json.list.reverse()", [2, 1, 3]), ("$json.list.sort()", [1, 2, 3]),
        ("$json.list.sort((a, b) => b - a)", [3, 2, 1]), ("$json.list.at(-1)", 2), ("$json.people.map(p => p.n).join()", "a,b,c"),
        ("$json.people.filter(p => p.age >= 18).map(p => ({name: p.n}))", [["name": "a"], ["name": "c"]]),
        ("$json.list.map((x, i) => i)", [0, 1, 2]), ("[].some(x => x)", false), ("$json.list.first()", 3), ("$json.list.last()", 2),
        // String methods
        ("$json.body.name.toUpperCase()", "ADA"), ("'  x '.trim()", "x"), ("'abc'.includes('b')", true), ("'abc'.startsWith('ab')", true),
        ("'abc'.endsWith('bc')", true), ("'banana'.indexOf('an')", 1), ("'banana'.lastIndexOf('an')", 3), ("'hello'.slice(1, 3)", "el"),
        ("'hello'.slice(-3)", "llo"), ("'hello'.substring(3, 1)", "el"), ("'a,b,c'.split(',')", ["a", "b", "c"]),
        ("'abc'.split('')", ["a", "b", "c"]),
        ("'a-b-a'.replace('a', 'x')", "x-b-a"), ("'a-b-a'.replaceAll('a', 'x')", "x-b-x"), ("'5'.padStart(3, '0')", "005"),
        ("'ab'.repeat(3)", "ababab"), ("'abc'.charAt(1)", "b"), ("'abc'.at(-1)", "c"), ("'a'.concat('b', 1)", "ab1"),
        ("'Ada'.length", 3), ("'x'.padEnd(3)", "x  "),
        // Numbers and Math
        ("$json.price.toFixed(1)", "20.0"), ("(255).toString(16)", "ff"), ("Math.max(1, 5, 3)", 5), ("Math.min(...[1])", nil),
        ("Math.round(2.5)", 3), ("Math.floor(-1.5)", -2), ("Math.abs(-3)", 3), ("Math.PI > 3.14", true), ("Math.pow(2, 8)", 256),
        ("Math.sqrt(16)", 4), ("Number('42') + 1", 43), ("String(42) + 1", "421"), ("Boolean('')", false), ("parseInt('42px')", 42),
        ("parseInt('ff', 16)", 255), ("parseFloat('3.5kg')", 3.5), ("isNaN(Number('x'))", true), ("$json.qty * $json.price", 59.97),
        ("0.1 + 0.2 === 0.3", false), ("Number($json.num) === 42", true),
        // Found by the fuzzer: huge numbers must not trap.
        ("{33333333333333333333: 1}", ["33333333333333330000": 1]), ("String(2 ** 64)", "18446744073709552000"),
        ("[1][1e300]", nil), ("'ab'[1e300]", nil), ("1e300 in [1]", false),
        // JSON and Object
        ("JSON.stringify({b: 1, a: [true, null]})", "{\"a\":[true,null],\"b\":1}"), ("JSON.parse('{\"x\": [1]}').x[0]", 1),
        // The one parser of every entry point: of a repeated key the first value counts.
        ("JSON.parse('{\"a\": 1, \"a\": 2}').a", 1),
        ("Object.keys($json.body.nested)", ["deep"]), ("Object.values({a: 1})", [1]), ("Object.entries({a: 1})", [["a", 1]]),
        ("Object.fromEntries([['a', 1]])", ["a": 1]), ("Array.isArray($json.list)", true), ("Array.isArray('x')", false),
        ("encodeURIComponent('a b&c')", "a%20b%26c"), ("decodeURIComponent('a%20b')", "a b"),
        // Context
        ("$input.all().length", 2), ("$input.first().json.body.name", "Ada"), ("$input.last().json.body.name", "Bob"),
        ("$input.item.json.qty", 3), ("$node['Webhook'].json.method", "POST"), ("$node[\"Set Name\"].json.name", "Ada"),
        ("$('Webhook').all().length", 2), ("$('Webhook').item.json.method", "POST"), ("$('Webhook').last().json.method", "GET"),
        ("$env.REGION", "eu"), ("$env.MISSING", nil), ("Number($env.LIMIT) + 1", 11), ("$execution.id", "exe_1"),
        ("$workflow.name", "Greet"), ("$workflow.id", "wf_1"), ("$itemIndex", 0), ("$items.length", 2),
        ("$now.toISO()", "2027-01-15T08:00:00.000Z"), ("$now.toMillis()", 1_800_000_000_000), ("$now.year", 2027),
        ("$now.plus(1, 'day').toISODate()", "2027-01-16"), ("$now.minus(2, 'hours').hour", 6),
        ("$today.toISO()", "2027-01-15T00:00:00.000Z"),
        ("Date.now()", 1_800_000_000_000), ("$now", "2027-01-15T08:00:00.000Z"),
    ]

    @Test("expression evaluates to the expected JSON", arguments: cases)
    func evaluates(source: String, expected: JSONValue) throws {
        if source.contains("...") {
            // Spread is not part of the language: it is a syntax error, not a silent value.
            #expect(throws: ExpressionError.self) { try Expression.evaluate(source, Self.context) }
            return
        }
        let value = try Expression.evaluate(source, Self.context)
        if case .number(let a) = value, case .number(let b) = expected {
            #expect(abs(a - b) < 1e-9, "\(source) → \(value)")
        } else {
            #expect(value == expected, "\(source) → \(value)")
        }
    }

    @Test("the table is large")
    func size() { #expect(Self.cases.count >= 150) }
}

@Suite struct TemplateTests {
    let context = ExpressionTableTests.context

    @Test("a string that is one expression keeps the value's type; mixed text interpolates")
    func interpolation() throws {
        #expect(try Template.evaluate("{{ $json.qty }}", context) == 3)
        #expect(try Template.evaluate("{{ $json.body }}", context) == ExpressionTableTests.item["body"]!)
        #expect(try Template.evaluate("Hello {{ $json.body.name }}!", context) == "Hello Ada!")
        #expect(try Template.evaluate("{{ 1 }}{{ 2 }}", context) == "12")
        #expect(try Template.evaluate("n={{ $json.none }}, m={{ $json.missing }}", context) == "n=, m=")
        #expect(try Template.evaluate("list: {{ $json.list }}", context) == "list: [3,1,2]")
        #expect(try Template.evaluate("obj {{ {a: {b: 1}} }}", context) == "obj {\"a\":{\"b\":1}}")
        #expect(try Template.evaluate("{{ '}}' }}", context) == "}}")
        #expect(try Template.evaluate("plain text", context) == "plain text")
        #expect(try Template.evaluate("", context) == "")
    }

    @Test("\\{{ writes a literal {{ and is not evaluated")
    func escaping() throws {
        #expect(try Template.evaluate("\\{{ $json.qty }}", context) == "{{ $json.qty }}")
        #expect(!Template.containsExpression("\\{{ x }}"))
        #expect(Template.containsExpression("a {{ x }}"))
    }

    @Test("data arriving at runtime is never evaluated as a template")
    func runtimeDataIsInert() throws {
        let hostile = ExpressionContext(
            json: ["name": "{{ $env.REGION }}", "payload": "{{ this.constructor.constructor('return process')() }}"],
            variables: ["REGION": "eu"])
        #expect(try Template.evaluate("Hi {{ $json.name }}", hostile) == "Hi {{ $env.REGION }}")
        #expect(try Template.evaluate("{{ $json.payload }}", hostile) == "{{ this.constructor.constructor('return process')() }}")
    }

    @Test("names a node binds ($response, $pageCount) read as data; other names stay undefined")
    func boundNames() throws {
        var scope = ExpressionContext()
        scope.boundNames = ["$response": ["body": ["next": "{{ $env.SECRET }}"]], "$pageCount": 2, "plain": 1]
        #expect(try Template.evaluate("{{ $response.body.next }}", scope) == "{{ $env.SECRET }}")
        #expect(try Template.evaluate("{{ $pageCount + 1 }}", scope) == 3)
        // Only `$` names are bound, and only while a node binds them.
        #expect(throws: ExpressionError.self) { try Template.evaluate("{{ plain }}", scope) }
        #expect(throws: ExpressionError.self) { try Template.evaluate("{{ $response }}", ExpressionContext()) }
    }

    @Test(
        "errors name the position",
        arguments: [
            ("{{ $json. }}", 10), ("{{ 1 + }}", 7), ("{{ (1 }}", 6), ("x {{ 'abc }}", 2), ("{{ }}", 2), ("{{ $json.a", 0),
        ])
    func syntaxErrors(template: String, position: Int) {
        do {
            _ = try Template(template)
            Issue.record("\(template) parsed")
        } catch {
            #expect(error.kind == .syntax, "\(template): \(error)")
            #expect(error.position == position, "\(template): \(error)")
        }
    }
}

/// The n8n expression-injection payloads (CVE-2025-68613 and relatives) and other escapes.
@Suite struct ExpressionSandboxTests {
    static let payloads: [String] = [
        "this.constructor.constructor('return process')()",
        "`${this.constructor.constructor('return process')()}`",
        "$json.constructor.constructor('return process')()",
        "({}).constructor.constructor('return process.env')()",
        "''.constructor.constructor('return this')()",
        "[].constructor.constructor('return process')()",
        "(() => {}).constructor('return process')()",
        "$json.__proto__",
        "$json['__proto__']",
        "$json['con' + 'structor']",
        "$json[`constructor`]['constructor']('return 1')()",
        "Object.constructor('return process')()",
        "Math.constructor",
        "$input.constructor",
        "process.env",
        "require('child_process').execSync('id')",
        "globalThis.process",
        "eval('1')",
        "Function('return process')()",
        "new Function('return 1')",
        "import('fs')",
        "this",
        "$env.constructor",
        "({['__proto__']: {x: 1}})",
        "Object.fromEntries([['__proto__', 1]])",
        "$json.body.name.constructor.prototype",
        "Reflect.ownKeys({})",
        "setTimeout('1', 0)",
    ]

    @Test("cannot reach a JS engine, the process or the filesystem", arguments: payloads)
    func refused(payload: String) {
        do {
            let value = try Expression.evaluate(payload, ExpressionContext(json: ["body": ["name": "x"]]))
            Issue.record("\(payload) evaluated to \(value)")
        } catch {
            #expect(error.kind == .forbidden || error.kind == .syntax || error.kind == .runtime, "\(payload): \(error)")
            #expect(!error.message.contains("process.env") || error.kind != .runtime)
        }
        do {
            _ = try Template.evaluate("{{ \(payload) }}", ExpressionContext())
            Issue.record("template with \(payload) evaluated")
        } catch {}
    }

    @Test("the prototype names are refused as forbidden, not merely missing", arguments: ["constructor", "__proto__", "prototype"])
    func forbiddenKind(name: String) {
        do {
            _ = try Expression.evaluate("$json.\(name)")
            Issue.record("evaluated")
        } catch {
            #expect(error.kind == .forbidden)
        }
    }

    @Test(
        "runaway expressions hit the step and size limits",
        arguments: [
            "'x'.repeat(10000000)",
            "'x'.repeat(1e300)",
            "'x'.padStart(100000000)",
            "$json.big.map(x => $json.big.map(y => x + y))",
            "$json.big.reduce((acc, x) => acc.concat(acc), [1])",
        ])
    func limits(source: String) {
        let big = JSONValue.array((0..<1000).map { .number(Double($0)) })
        do {
            _ = try Expression.evaluate(source, ExpressionContext(json: ["big": big]))
            Issue.record("\(source) finished")
        } catch {
            #expect(error.kind == .limit, "\(source): \(error)")
        }
    }

    @Test("deep nesting is refused without crashing")
    func deepNesting() throws {
        let source = String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000)
        #expect(throws: ExpressionError.self) { try Expression.evaluate(source) }
        let long = String(repeating: "1+", count: 20_000) + "1"
        #expect(throws: ExpressionError.self) { try Expression.evaluate(long) }
        let chain = String(repeating: "1+", count: 4_000) + "1"
        #expect(throws: ExpressionError.self) { try Expression.evaluate(chain) }
        let unary = String(repeating: "!", count: 4_000) + "1"
        #expect(throws: ExpressionError.self) { try Expression.evaluate(unary) }
        #expect(try Expression.evaluate(String(repeating: "1+", count: 400) + "1") == 401)
    }

    @Test("runtime errors are clear")
    func runtimeErrors() {
        for (source, message) in [
            ("$json.a.b", "Cannot read properties of undefined (reading 'b')"), ("nope", "nope is not defined"),
            ("$json.x()", "is not a function"), ("$node['Ghost'].json", "No output from a node called 'Ghost'"),
        ] {
            do {
                _ = try Expression.evaluate(source)
                Issue.record("\(source) evaluated")
            } catch {
                #expect(error.kind == .runtime)
                #expect(error.message.contains(message), "\(error.message)")
            }
        }
    }
}

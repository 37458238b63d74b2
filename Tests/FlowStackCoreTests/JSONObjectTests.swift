import Foundation
import Testing

@testable import FlowStackCore

@Suite struct JSONObjectTests {
    @Test("members keep the order they were added in; a set replaces in place, a removal closes the gap")
    func order() {
        var object: JSONObject = ["b": 1, "a": 2]
        object["c"] = 3
        object["a"] = 20
        #expect(Array(object.keys) == ["b", "a", "c"])
        #expect(object["a"] == 20)
        object["b"] = nil
        #expect(Array(object.keys) == ["a", "c"])
        #expect(object.removeValue(forKey: "c") == 3)
        #expect(object.removeValue(forKey: "missing") == nil)
        #expect(Array(object.keys) == ["a"])
        #expect(JSONValue.object(["z": 1, "y": [2, ["x": true]]]).jsonBytes() == Array(#"{"z":1,"y":[2,{"x":true}]}"#.utf8))
        #expect(JSONValue.object(["z": 1, "y": 2]).jsonText == #"{"y":2,"z":1}"#)
    }

    @Test("equality and hashing ignore the order, as for a dictionary")
    func equality() {
        let one: JSONObject = ["a": 1, "b": ["c": "d"]]
        let other: JSONObject = ["b": ["c": "d"], "a": 1]
        #expect(one == other)
        #expect(one.hashValue == other.hashValue)
        #expect(Set([JSONValue.object(one), .object(other)]).count == 1)
        #expect(one != ["a": 1, "b": ["c": "e"]])
        #expect(one != ["a": 1])
        #expect(one != ["a": 1, "x": ["c": "d"]])
        #expect(JSONObject(["b": 2, "a": 1]) == ["a": 1, "b": 2])
    }

    @Test("objects parsed with the same keys share their keys; adding a key to each still gives one set of keys")
    func sharing() throws {
        let items = try #require(try JSONValue(parsing: Array(#"[{"id":1,"n":"a"},{"id":2,"n":"b"},{"n":"c","id":3}]"#.utf8)).arrayValue)
        var objects = items.compactMap(\.objectValue)
        #expect(objects.map { Array($0.keys) } == [["id", "n"], ["id", "n"], ["n", "id"]])
        #expect(!objects[0].sharesKeys(with: objects[2]))
        #expect(objects[0].sharesKeys(with: objects[1]))
        for index in objects.indices { objects[index]["double"] = .number(Double(index) * 2) }
        #expect(objects[0].sharesKeys(with: objects[1]))
        #expect(objects[1]["double"] == 2)
        // The originals are values: changing the copies did not change them.
        #expect(items[0].objectValue?["double"] == nil)
    }

    @Test("a repeated key in parsed JSON: the first value counts, in small and large objects")
    func repeatedKeys() throws {
        #expect(try JSONValue(parsing: Array(#"{"a":1,"b":2,"a":3}"#.utf8)) == ["a": 1, "b": 2])
        let members = (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        let parsed = try #require(try JSONValue(parsing: Array("{\(members),\"k3\":99,\"k39\":100}".utf8)).objectValue)
        #expect(parsed.count == 40)
        #expect(parsed["k3"] == 3)
        #expect(parsed["k39"] == 39)
    }

    @Test("a large object built key by key finds every key, and objects with many distinct keys do not share")
    func large() {
        var object = JSONObject()
        for index in 0..<5_000 { object["key\(index)"] = .number(Double(index)) }
        #expect(object.count == 5_000)
        #expect(object["key4321"] == 4321)
        #expect(object["key5000"] == nil)
        object["key10"] = nil
        #expect(object["key10"] == nil)
        #expect(object["key11"] == 11)
        #expect(object.count == 4_999)
        // A copy changed after the copy was made does not change the original.
        var copy = object
        copy["extra"] = true
        #expect(object["extra"] == nil)
        #expect(copy["extra"] == true)
    }

    @Test("large parsed objects with the same keys share them; a key added to one changes only that one")
    func largeShared() throws {
        let members = (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        let parsed = try #require(try JSONValue(parsing: Array("[{\(members)},{\(members)}]".utf8)).arrayValue)
        var first = try #require(parsed[0].objectValue)
        let second = try #require(parsed[1].objectValue)
        #expect(first.sharesKeys(with: second))
        first["extra"] = 1
        first["k0"] = nil
        #expect(first.count == 40)
        #expect(first["extra"] == 1)
        #expect(first["k39"] == 39)
        #expect(second.count == 40)
        #expect(second["extra"] == nil)
        #expect(second["k0"] == 0)
        #expect(!first.sharesKeys(with: second))
    }

    @Test("many different keys added to the same small object: each result is right however many successors there are")
    func manySuccessors() {
        let base: JSONObject = ["id": 1]
        for index in 0..<200 {
            var object = base
            object["field\(index)"] = .number(Double(index))
            #expect(Array(object.keys) == ["id", "field\(index)"])
            #expect(object["field\(index)"] == .number(Double(index)))
        }
    }

    @Test("keys from outside cannot grow the shared successor tables without bound")
    func successorsBounded() {
        // Three levels of 40 new names each: 40 + 1,600 + 64,000 successors without the bound.
        for a in 0..<40 {
            for b in 0..<40 {
                for c in 0..<40 {
                    var object = JSONObject()
                    object["bound-a\(a)"] = 1
                    object["bound-b\(b)"] = 2
                    object["bound-c\(c)"] = 3
                    #expect(object.count == 3)
                }
            }
        }
        #expect(JSONShape.cachedCount <= JSONShape.cachedLimit)
    }

    @Test("Codable round trip keeps the members")
    func codable() throws {
        let value: JSONValue = ["a": [1, 2], "b": ["c": nil, "d": "e"]]
        let decoded = try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(value))
        #expect(decoded == value)
    }
}

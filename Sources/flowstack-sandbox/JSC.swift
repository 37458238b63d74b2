import CJavaScriptCore

/// GC roots for the JavaScript values Swift holds across API calls during one request.
///
/// JavaScriptCore finds references from native code by scanning stacks and registers conservatively
/// (its collector also runs concurrently, suspending this thread to scan it). A value that Swift
/// keeps only in heap memory, such as an argument array, or in a local the optimizer considers
/// dead, is invisible to that scan and can be freed before JavaScriptCore uses it. Every value that
/// outlives the call that produced it is protected here, and all are released together before the
/// context is.
final class Roots {
    private let ctx: JSContextRef
    private var values: [JSValueRef] = []

    init(_ ctx: JSContextRef) {
        self.ctx = ctx
    }

    /// Protects `value` until `release()`, and returns it. (JSObjectRef and JSValueRef are the same
    /// pointer type in Swift, so objects go through here too.)
    @discardableResult
    func keep(_ value: JSValueRef?) -> JSValueRef? {
        guard let value else { return nil }
        JSValueProtect(ctx, value)
        values.append(value)
        return value
    }

    func release() {
        for value in values { JSValueUnprotect(ctx, value) }
        values.removeAll()
    }
}

/// Small conveniences over JavaScriptCore's C API.
enum JS {
    /// A new JSStringRef (caller releases) from UTF-16 code units.
    static func makeString(utf16 units: [UInt16]) -> JSStringRef {
        units.withUnsafeBufferPointer { JSStringCreateWithCharacters($0.baseAddress, $0.count) }
    }

    /// A new JSStringRef from a Swift string (which is valid UTF-8). A NUL character ends it, which
    /// is harmless here: raw NUL bytes cannot occur in a valid JSON request.
    static func makeString(_ text: String) -> JSStringRef {
        var text = text
        return text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { chars in
                // withUTF8 gives no terminator: copy into a NUL-terminated buffer.
                let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: chars.count + 1)
                defer { buffer.deallocate() }
                if let base = chars.baseAddress { buffer.update(from: base, count: chars.count) }
                buffer[chars.count] = 0
                return JSStringCreateWithUTF8CString(buffer)
            }
        }
    }

    /// The contents of a JSStringRef (lone surrogates become U+FFFD).
    static func string(_ js: JSStringRef, maxUnits: Int = Int.max) -> String {
        let length = min(JSStringGetLength(js), maxUnits)
        guard length > 0, let characters = JSStringGetCharactersPtr(js) else { return "" }
        return String(decoding: UnsafeBufferPointer(start: characters, count: length), as: UTF16.self)
    }

    /// ToString of a value (its first `maxUnits` UTF-16 units), or nil if that threw.
    static func string(_ ctx: JSContextRef, _ value: JSValueRef?, maxUnits: Int = Int.max) -> String? {
        guard let value, let js = JSValueToStringCopy(ctx, value, nil) else { return nil }
        defer { JSStringRelease(js) }
        return string(js, maxUnits: maxUnits)
    }

    /// The UTF-8 bytes of a string value (no terminating NUL).
    static func utf8(_ ctx: JSContextRef, _ value: JSValueRef?) -> [UInt8]? {
        guard let value, let js = JSValueToStringCopy(ctx, value, nil) else { return nil }
        defer { JSStringRelease(js) }
        let capacity = JSStringGetMaximumUTF8CStringSize(js)
        var bytes = [UInt8](repeating: 0, count: capacity)
        let written = bytes.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: capacity) {
                JSStringGetUTF8CString(js, $0, capacity)
            }
        }
        bytes.removeSubrange(max(0, written - 1)..<capacity)
        return bytes
    }

    static func property(_ ctx: JSContextRef, _ object: JSObjectRef, _ name: String) -> JSValueRef? {
        let key = makeString(name)
        defer { JSStringRelease(key) }
        return JSObjectGetProperty(ctx, object, key, nil)
    }

    static func isString(_ ctx: JSContextRef, _ value: JSValueRef?) -> Bool {
        guard let value else { return false }
        return JSValueGetType(ctx, value) == kJSTypeString
    }

    static func isNumber(_ ctx: JSContextRef, _ value: JSValueRef?) -> Bool {
        guard let value else { return false }
        return JSValueGetType(ctx, value) == kJSTypeNumber
    }

    static func isFunction(_ ctx: JSContextRef, _ value: JSValueRef?) -> JSObjectRef? {
        guard let value, JSValueIsObject(ctx, value), let object = JSValueToObject(ctx, value, nil),
            JSObjectIsFunction(ctx, object)
        else { return nil }
        return object
    }

    /// A finite number property as Int, or nil when absent or not a number.
    static func integer(_ ctx: JSContextRef, _ object: JSObjectRef, _ name: String) -> Int? {
        let value = property(ctx, object, name)
        guard isNumber(ctx, value) else { return nil }
        let number = JSValueToNumber(ctx, value, nil)
        guard number.isFinite else { return nil }
        return Int(max(-1e15, min(1e15, number.rounded(.towardZero))))
    }
}

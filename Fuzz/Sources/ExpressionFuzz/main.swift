import FlowStackCore
import Foundation

/// Any input must parse or fail with an ExpressionError: never crash, hang or escape.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    var limits = ExpressionLimits()
    limits.steps = 20_000
    let context = ExpressionContext(json: ["a": [1, 2, 3], "s": "text", "o": ["k": nil]], nodeOutputs: ["N": [Item(json: ["x": 1])]],
                                    variables: ["V": "1"], now: Date(timeIntervalSince1970: 0), limits: limits)
    _ = try? Expression.evaluate(text, context)
    _ = try? Template.evaluate(text, context)
    _ = try? CronExpression(text)
    return 0
}

import MergeCompiler
import MergeModel

/// Elementwise kernels over f32 buffers.
///
/// Each loop runs over raw pointers (checked in debug builds, free in release) with no
/// classes, existentials or closures inside.
enum Kernels {
  /// The uniform value in [0, 1) of element `index` of random stream `stream` (24 bits).
  @inline(__always)
  static func uniform(_ stream: UInt64, _ index: Int) -> Float {
    let z = Lowering.mix(stream &+ UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15)
    return Float(z >> 40) * (1.0 / 16_777_216.0)
  }

  /// Rounds every value to `dtype` and back (a recipe's `dtype` below f32).
  static func roundTrip(_ p: UnsafeMutablePointer<Float>, _ n: Int, to dtype: DType) {
    switch dtype {
    case .bfloat16:
      for i in 0..<n {
        p[i] = FloatConversion.float(fromBFloat16: FloatConversion.bfloat16(from: p[i]))
      }
    case .float16:
      for i in 0..<n {
        p[i] = FloatConversion.float(fromFloat16: FloatConversion.float16(from: p[i]))
      }
    default:
      break
    }
  }

  static func subtract(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
    _ n: Int
  ) {
    for i in 0..<n { out[i] = a[i] - b[i] }
  }

  static func add(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
    _ n: Int
  ) {
    for i in 0..<n { out[i] = a[i] + b[i] }
  }

  static func scale(
    _ a: UnsafePointer<Float>, _ c: Float, _ out: UnsafeMutablePointer<Float>, _ n: Int
  ) {
    for i in 0..<n { out[i] = a[i] * c }
  }

  static func divide(
    _ a: UnsafePointer<Float>, _ c: Float, _ out: UnsafeMutablePointer<Float>, _ n: Int
  ) {
    for i in 0..<n { out[i] = a[i] / c }
  }

  /// `Σ |x|` in f64: f32 partial sums over runs of 64, combined in f64.
  static func l1(_ a: UnsafePointer<Float>, _ n: Int) -> Double {
    var total: Double = 0
    var i = 0
    while i < n {
      let end = min(n, i + 64)
      var s: Float = 0
      while i < end {
        s += abs(a[i])
        i += 1
      }
      total += Double(s)
    }
    return total
  }

  /// Writes `n` f32 values as `dtype` bytes (rounding to nearest even once).
  static func encode(
    _ a: UnsafePointer<Float>, _ n: Int, _ dtype: DType, into out: UnsafeMutableRawPointer
  ) {
    switch dtype {
    case .bfloat16:
      let o = out.assumingMemoryBound(to: UInt16.self)
      for i in 0..<n { o[i] = FloatConversion.bfloat16(from: a[i]) }
    case .float16:
      let o = out.assumingMemoryBound(to: UInt16.self)
      for i in 0..<n { o[i] = FloatConversion.float16(from: a[i]) }
    case .float64:
      let o = out.assumingMemoryBound(to: Double.self)
      for i in 0..<n { o[i] = Double(a[i]) }
    default:
      let o = out.assumingMemoryBound(to: Float.self)
      for i in 0..<n { o[i] = a[i] }
    }
  }
}

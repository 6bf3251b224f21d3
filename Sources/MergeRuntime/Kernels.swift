import CMergeSupport
import MergeCompiler
import MergeModel

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Elementwise kernels over f32 buffers.
///
/// Each loop runs over raw pointers (checked in debug builds, free in release) with no
/// classes, existentials or closures inside.
enum Kernels {
  /// Whether this CPU runs the AVX2 kernels of `merge_kernels.h` (x86-64 with AVX2 and FMA);
  /// where it does not, the Swift loops they replace run instead.
  static let avx2 = merge_kernels_available() != 0

  /// The uniform value in [0, 1) of element `index` of random stream `stream` (24 bits).
  @inline(__always)
  static func uniform(_ stream: UInt64, _ index: Int) -> Float {
    let z = RandomStream.mix(stream &+ UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15)
    return Float(z >> 40) * (1.0 / 16_777_216.0)
  }

  /// DARE's drop: keeps `x[i]` when `uniform(stream, first + i) < density`.
  ///
  /// The comparison is done on the 24-bit integer behind the uniform value: `k·2⁻²⁴ < d`
  /// exactly when `k < ⌈d·2²⁴⌉`, which spares an int-to-float conversion per element.
  static func keepRandom(
    _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int, first: Int,
    density: Float, stream: UInt64
  ) {
    let limit = UInt64((Double(density) * 16_777_216).rounded(.up))
    var z0 = stream &+ UInt64(truncatingIfNeeded: first) &* 0x9E37_79B9_7F4A_7C15
    for i in 0..<n {
      let k = RandomStream.mix(z0) >> 40
      z0 = z0 &+ 0x9E37_79B9_7F4A_7C15
      // A multiply by the 0/1 mask, as torch applies it (and without a branch to mispredict).
      out[i] = x[i] * (k < limit ? 1 : 0)
    }
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

  /// Fused task arithmetic: `base + λ·((Σ (xᵢ − base)·wᵢ) / d)` in one pass, each f32
  /// operation in the unfused graph's order (bit-identical to it).
  static func fusedTaskSum(
    _ base: UnsafePointer<Float>, _ xs: UnsafeBufferPointer<UnsafePointer<Float>>,
    _ w: UnsafeBufferPointer<Float>,
    _ out: UnsafeMutablePointer<Float>, _ n: Int, divisor: Float?, lambda: Float?
  ) {
    let m = xs.count
    // Model by model over the whole block, so each loop vectorizes; every element still sees
    // the same operations in the same order as the unfused graph.
    let x0 = xs[0]
    let w0 = w[0]
    for i in 0..<n { out[i] = (x0[i] - base[i]) * w0 }
    for k in 1..<max(1, m) {
      let x = xs[k]
      let wk = w[k]
      for i in 0..<n { out[i] += (x[i] - base[i]) * wk }
    }
    if let d = divisor {
      for i in 0..<n { out[i] = out[i] / d }
    }
    if let l = lambda {
      for i in 0..<n { out[i] = out[i] * l }
    }
    for i in 0..<n { out[i] = base[i] + out[i] }
  }

  /// TIES' sign election and disjoint mean over weighted task vectors (see `Op.signConsensus`).
  ///
  /// Model by model over the block, so that each loop vectorizes, with `total` and `divisor`
  /// as block-sized scratch; every element sees the same f32 operations in the same order as
  /// an element-by-element loop would. Selects instead of branches: the signs of task vectors
  /// are unpredictable.
  static func signConsensus(
    _ deltas: UnsafeBufferPointer<UnsafePointer<Float>>, _ weights: UnsafeBufferPointer<Float>,
    _ out: UnsafeMutablePointer<Float>, _ n: Int, normalize: Bool,
    total: UnsafeMutablePointer<Float>, divisor: UnsafeMutablePointer<Float>
  ) {
    let m = deltas.count
    for i in 0..<n { total[i] = 0 }
    for k in 0..<m {
      let d = deltas[k]
      for i in 0..<n { total[i] += d[i] }
    }
    for i in 0..<n {
      out[i] = 0
      divisor[i] = 0
    }
    for k in 0..<m {
      let d = deltas[k]
      let w = weights[k]
      for i in 0..<n {
        let v = d[i]
        let agrees = total[i] >= 0 ? v > 0 : v < 0
        out[i] += agrees ? v : 0
        divisor[i] += agrees ? w : 0
      }
    }
    if normalize {
      for i in 0..<n { out[i] /= divisor[i] == 0 ? 1 : divisor[i] }
    }
  }

  /// `Σ x²` in f64.
  static func sumOfSquares(_ a: UnsafePointer<Float>, _ n: Int) -> Double {
    var s = 0.0
    for i in 0..<n { s += Double(a[i]) * Double(a[i]) }
    return s
  }

  /// slerp's norm from a sum of squares: rounded to f32, and 1 when at most 1e-8 (or NaN).
  static func slerpNorm(_ sumOfSquares: Double) -> Float {
    let norm = Float(sumOfSquares.squareRoot())
    return norm > 1e-8 ? norm : 1
  }

  /// `Σ (a/na)·(b/nb)`: the quotients in f32, products and sum in f64.
  static func normalizedDot(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int, _ na: Float, _ nb: Float
  ) -> Double {
    var s = 0.0
    for i in 0..<n { s += Double(a[i] / na) * Double(b[i] / nb) }
    return s
  }

  /// slerp's coefficients of `a` and `b` from the cosine of the normalized tensors: linear
  /// interpolation when |cosine| > 0.9995, trigonometry in f64 rounded where torch holds f32.
  static func slerpCoefficients(t: Float, cosine: Double) -> (Float, Float) {
    let dot = min(1, max(-1, Float(cosine)))
    let linear = abs(dot) > 0.9995
    let theta = Float(acos(Double(linear ? 0 : dot)))
    let sinTheta = Float(sin(Double(theta)))
    let ca: Float = linear ? 1 - t : Float(sin(Double((1 - t) * theta))) / sinTheta
    let cb: Float = linear ? t : Float(sin(Double(t * theta))) / sinTheta
    return (ca, cb)
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

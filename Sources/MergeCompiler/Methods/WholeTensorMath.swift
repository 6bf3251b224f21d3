/// Helpers the whole-tensor kernels share: dot products and norms accumulated in f64, and the
/// vectors (rows, columns or the whole tensor) a kernel works on.
enum WholeTensorMath {
  /// `Σ aᵢ·bᵢ`, each product and the sum in f64, in index order.
  static func dot(_ a: [Float], _ b: [Float]) -> Double {
    var s = 0.0
    for i in a.indices { s += Double(a[i]) * Double(b[i]) }
    return s
  }

  /// The Euclidean norm, accumulated in f64.
  static func norm(_ a: [Float]) -> Double { dot(a, a).squareRoot() }

  /// `a − b` in f32.
  static func subtract(_ a: [Float], _ b: [Float]) -> [Float] { zip(a, b).map { $0 - $1 } }

  /// `a + b` in f32.
  static func add(_ a: [Float], _ b: [Float]) -> [Float] { zip(a, b).map { $0 + $1 } }

  /// The base (the first input) and the task vectors of the others over it, in f32.
  static func taskVectors(_ inputs: [[Float]]) -> (base: [Float], vectors: [[Float]]) {
    let base = inputs[0]
    return (base, inputs.dropFirst().map { subtract($0, base) })
  }

  /// Vectors of a tensor: `count` of them, `length` elements each, element `j` of vector `v`
  /// at `v·vectorStride + j·elementStride` (strides, not a closure, so the loops stay plain).
  struct Layout {
    var count: Int
    var length: Int
    var vectorStride: Int
    var elementStride: Int

    /// The whole tensor as one vector.
    static func flat(_ n: Int) -> Layout {
      Layout(count: 1, length: n, vectorStride: 0, elementStride: 1)
    }

    @inline(__always)
    func index(_ v: Int, _ j: Int) -> Int { v &* vectorStride &+ j &* elementStride }
  }

  /// The vectors along a tensor's last dimension (its rows), or along its first (its columns,
  /// when `alongFirst`); a 1-D tensor is one vector.
  static func vectors(shape: [Int], alongFirst: Bool) -> Layout {
    let total = shape.reduce(1, *)
    guard shape.count >= 2 else { return .flat(total) }
    if alongFirst {
      let rows = shape[0]
      let columns = total / max(1, rows)
      return Layout(count: columns, length: rows, vectorStride: 1, elementStride: columns)
    }
    let length = shape[shape.count - 1]
    return Layout(
      count: total / max(1, length), length: length, vectorStride: length, elementStride: 1)
  }
}

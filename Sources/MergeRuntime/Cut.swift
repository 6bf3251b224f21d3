/// The result of a `sortPrefix` reduction: the set of elements a sort of `|x|` puts before a
/// position, in the cheapest form that describes it exactly.
struct Cut: Sendable {
  enum Kind: Sendable {
    /// No element.
    case nothing
    /// Every element.
    case everything
    /// Elements whose magnitude bits lie strictly beyond `threshold` (above it for a
    /// descending sort, below for an ascending one), plus those equal to it when `ties`.
    case threshold(UInt32, ties: Bool, descending: Bool)
    /// An explicit set, when the position splits a run of equal magnitudes.
    case set(Bitset)
  }

  var kind: Kind

  /// Multiplies `x[i]` by 1 where element `first + i` is in the prefix (or outside it, when
  /// `keepInside` is false) and by 0 elsewhere, as mergekit multiplies by its mask;
  /// `x` and `out` may be the same buffer.
  ///
  /// The kind is decided once per block, outside the loop.
  func select(
    _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int, first: Int,
    keepInside: Bool
  ) {
    switch kind {
    case .nothing, .everything:
      let factor: Float
      if case .nothing = kind { factor = keepInside ? 0 : 1 } else { factor = keepInside ? 1 : 0 }
      for i in 0..<n { out[i] = x[i] * factor }
    case .threshold(let t, let ties, let descending):
      for i in 0..<n {
        let m = x[i].magnitude.bitPattern
        let inside = m == t ? ties : (descending ? m > t : m < t)
        out[i] = x[i] * (inside == keepInside ? 1 : 0)
      }
    case .set(let bits):
      bits.words.withUnsafeBufferPointer { words in
        for i in 0..<n {
          let index = first + i
          let inside = words[index >> 6] & (1 << UInt64(index & 63)) != 0
          out[i] = x[i] * (inside == keepInside ? 1 : 0)
        }
      }
    }
  }
}

/// A pointer that workers write through at disjoint indices.
///
/// Each block writes only its own elements, and the owner keeps the memory alive until every
/// worker has returned; that is what makes sharing it safe.
struct UnsafeMutableSendablePointer<T>: @unchecked Sendable {
  let pointer: UnsafeMutablePointer<T>
  init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}

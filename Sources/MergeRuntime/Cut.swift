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
    /// When the position splits a run of magnitudes equal to `threshold`: the elements strictly
    /// beyond it, and of the equal ones those in `ties` (which torch's sort puts first).
    case thresholdWithTies(UInt32, descending: Bool, ties: Bitset)
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
      // Branch-free: `inside` is 0 or 1 from integer arithmetic on the magnitude bits.
      let tie: UInt32 = ties ? 1 : 0
      let flip: UInt32 = keepInside ? 0 : 1
      let threshold = UInt64(t)
      if descending {
        for i in 0..<n {
          let m = UInt64(x[i].magnitude.bitPattern)
          let beyond = UInt32(truncatingIfNeeded: (threshold &- m) >> 63)
          let equal = UInt32(truncatingIfNeeded: m == threshold ? 1 : 0)
          out[i] = x[i] * Float((beyond | (equal & tie)) ^ flip)
        }
      } else {
        for i in 0..<n {
          let m = UInt64(x[i].magnitude.bitPattern)
          let beyond = UInt32(truncatingIfNeeded: (m &- threshold) >> 63)
          let equal = UInt32(truncatingIfNeeded: m == threshold ? 1 : 0)
          out[i] = x[i] * Float((beyond | (equal & tie)) ^ flip)
        }
      }
    case .thresholdWithTies(let t, let descending, let ties):
      // As above, with the tie bit of each element taken from the set. `beyond` is the sign
      // of `m − t` (ascending) or of `t − m` = `(m − t)·(−1)` (descending).
      let flip: UInt32 = keepInside ? 0 : 1
      let threshold = UInt64(t)
      let direction: UInt64 = descending ? UInt64.max : 1
      ties.words.withUnsafeBufferPointer { words in
        // A word of tie bits at a time, so the inner loop has no per-element index arithmetic.
        var i = 0
        while i < n {
          let index = first &+ i
          let word = words[index >> 6] >> UInt64(index & 63)
          let span = min(n &- i, 64 &- (index & 63))
          for j in 0..<span {
            let m = UInt64(x[i &+ j].magnitude.bitPattern)
            let bit = UInt32(truncatingIfNeeded: word >> UInt64(j)) & 1
            let beyond = UInt32(truncatingIfNeeded: ((m &- threshold) &* direction) >> 63)
            let equal = UInt32(truncatingIfNeeded: m == threshold ? 1 : 0)
            out[i &+ j] = x[i &+ j] * Float((beyond | (equal & bit)) ^ flip)
          }
          i &+= span
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

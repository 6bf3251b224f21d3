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
      Self.selectBeyond(
        x, out, n, threshold: t, ties: ties, descending: descending, keepInside: keepInside)
    case .thresholdWithTies(let t, let descending, let ties):
      // Strictly beyond the threshold first, then the few equal elements in the set, whose
      // values are taken before (`x` may be `out`).
      var kept: [(Int, Float)] = []
      ties.words.withUnsafeBufferPointer { words in
        guard n > 0 else { return }
        let last = first + n - 1
        for w in (first >> 6)...(last >> 6) {
          var word = words[w]
          if w == first >> 6 { word &= ~0 << UInt64(first & 63) }
          if w == last >> 6 && last & 63 != 63 { word &= (1 << UInt64(last & 63 + 1)) - 1 }
          while word != 0 {
            let i = (w << 6 | word.trailingZeroBitCount) - first
            kept.append((i, x[i]))
            word &= word - 1
          }
        }
      }
      Self.selectBeyond(
        x, out, n, threshold: t, ties: false, descending: descending, keepInside: keepInside)
      let factor: Float = keepInside ? 1 : 0
      for (i, v) in kept { out[i] = v * factor }
    }
  }
}

extension Cut {
  /// The selection as `merge_fused_consensus` takes it, for a prefix of a descending sort kept
  /// inside: the elements whose magnitude bits are this or more (besides the tie set's); nil
  /// for an ascending one.
  var fusedBound: UInt32? {
    switch kind {
    case .nothing: return 0x8000_0000
    case .everything: return 0
    case .threshold(let t, let ties, true): return ties ? t : t &+ 1
    case .thresholdWithTies(let t, true, _): return t &+ 1
    default: return nil
    }
  }

  /// Calls `body` with the words of each cut's tie set (nil where it has none), after those
  /// already gathered in `words`.
  static func withTieWords<R>(
    _ cuts: ArraySlice<Cut>, _ words: [UnsafePointer<UInt64>?],
    _ body: ([UnsafePointer<UInt64>?]) -> R
  ) -> R {
    guard let cut = cuts.first else { return body(words) }
    guard case .thresholdWithTies(_, _, let ties) = cut.kind else {
      return withTieWords(cuts.dropFirst(), words + [nil], body)
    }
    return ties.words.withUnsafeBufferPointer { w in
      withTieWords(cuts.dropFirst(), words + [w.baseAddress], body)
    }
  }

  /// Multiplies each element by 1 or 0 by where its magnitude lies against a threshold.
  ///
  /// `out[i] = x[i]·1` where `|x[i]|` lies strictly beyond `threshold` (above it when
  /// `descending`, below otherwise), or equals it and `ties`; `x[i]·0` elsewhere — or the other
  /// way round when not `keepInside`. A comparison of magnitude bits against one bound, with no
  /// branch, so that it vectorizes.
  static func selectBeyond(
    _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int, threshold t: UInt32,
    ties: Bool, descending: Bool, keepInside: Bool
  ) {
    // Inside ⇔ bits ≥ low (descending) or bits < high (ascending); magnitude bits are at most
    // 0x7FFF_FFFF, so `t + 1` cannot wrap. Eight at a time with explicit vectors (`x` and `out`
    // may be the same buffer, which keeps the compiler from vectorizing a plain loop).
    let bound = descending ? (ties ? t : t &+ 1) : (ties ? t &+ 1 : t)
    let inside: Float = keepInside ? 1 : 0
    let outside: Float = keepInside ? 0 : 1
    let beyondIsInside = descending
    let whenBeyond = SIMD8<Float>(repeating: beyondIsInside ? inside : outside)
    let otherwise = SIMD8<Float>(repeating: beyondIsInside ? outside : inside)
    let limit = SIMD8<UInt32>(repeating: bound)
    let magnitude = SIMD8<UInt32>(repeating: 0x7FFF_FFFF)
    let source = UnsafeRawPointer(x)
    let destination = UnsafeMutableRawPointer(out)
    var i = 0
    while i &+ 8 <= n {
      let v = source.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self)
      let bits = source.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<UInt32>.self)
      let factor = otherwise.replacing(with: whenBeyond, where: (bits & magnitude) .>= limit)
      destination.storeBytes(of: v * factor, toByteOffset: i &* 4, as: SIMD8<Float>.self)
      i &+= 8
    }
    while i < n {
      let beyond = x[i].magnitude.bitPattern >= bound
      out[i] = x[i] * (beyond == beyondIsInside ? inside : outside)
      i &+= 1
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

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

  /// Whether element `index`, of magnitude bits `m`, is in the prefix.
  @inline(__always)
  func contains(_ index: Int, magnitude m: UInt32) -> Bool {
    switch kind {
    case .nothing: return false
    case .everything: return true
    case .threshold(let t, let ties, let descending):
      if m == t { return ties }
      return descending ? m > t : m < t
    case .set(let bits): return bits.contains(index)
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

/// Which elements a torch sort puts first, reproduced exactly.
///
/// mergekit picks "the k largest magnitudes" with `torch.argsort(w, descending=True)[:k]` and
/// breadcrumbs' band with `torch.sort(w).indices[a:b]`. On the CPU, torch sorts with
/// libstdc++'s `std::sort` (introsort: median-of-three quicksort, heapsort past a depth
/// limit, insertion sort of runs of at most 16), which is not stable: which of several equal
/// magnitudes land before position k depends on the whole array. To give the same weights as
/// mergekit, this runs the same algorithm with torch's comparators
/// (`KeyValueCompDesc`: NaN first, then larger; `KeyValueCompAsc`: smaller, NaN last), but only
/// into the partitions that straddle one of the wanted positions — as quickselect would — so it
/// costs O(n) on average rather than O(n log n). Elements never cross partition boundaries in
/// the final insertion sort, so the result at the wanted positions is exactly the full sort's.
struct TorchSortEmulation {
  /// Threshold of libstdc++'s introsort (`_S_threshold`).
  static let threshold = 16

  /// Sort keys: the magnitudes' bit patterns, complemented for a descending sort, so that
  /// torch's comparator is `<` on them either way.
  private let values: UnsafeMutablePointer<UInt32>
  private let indices: UnsafeMutablePointer<Int32>
  private let count: Int
  private let descending: Bool
  private let boundaries: [Int]

  /// Emulates the sort of `values` (whose element `i` starts at position `i`) and returns, for
  /// each boundary `b`, a bitset over original indices of the elements at sorted positions `< b`.
  static func prefixSets(
    of values: UnsafeMutablePointer<Float>, count: Int, descending: Bool, boundaries: [Int]
  ) -> [Bitset] {
    let indices = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, count))
    defer { indices.deallocate() }
    for i in 0..<count { indices[i] = Int32(truncatingIfNeeded: i) }
    let keys = UnsafeMutableRawPointer(values).assumingMemoryBound(to: UInt32.self)
    if descending {
      for i in 0..<count { keys[i] = ~keys[i] }
    }
    let sorter = TorchSortEmulation(
      values: keys, indices: indices, count: count, descending: descending, boundaries: boundaries
    )
    sorter.sort()
    return boundaries.map { b in
      var set = Bitset(count: count)
      set.insert(indices, count: min(max(0, b), count))
      return set
    }
  }

  private init(
    values: UnsafeMutablePointer<UInt32>, indices: UnsafeMutablePointer<Int32>, count: Int,
    descending: Bool, boundaries: [Int]
  ) {
    self.values = values
    self.indices = indices
    self.count = count
    self.descending = descending
    self.boundaries = boundaries
  }

  // MARK: Comparator (torch's KeyValueCompDesc / KeyValueCompAsc on the values)

  /// torch's comparators on magnitudes.
  ///
  /// For non-negative floats the bit patterns order as the values, and NaN's lie above +∞: so
  /// `KeyValueCompAsc` (smaller first, NaN last) is `<` on the bits, and `KeyValueCompDesc`
  /// (NaN first, then larger) is `<` on the complemented bits.
  @inline(__always)
  private func less(_ x: UInt32, _ y: UInt32) -> Bool { x < y }

  @inline(__always)
  private func less(at i: Int, _ j: Int) -> Bool { less(values[i], values[j]) }

  @inline(__always)
  private func swapAt(_ i: Int, _ j: Int) {
    let v = values[i]
    values[i] = values[j]
    values[j] = v
    let k = indices[i]
    indices[i] = indices[j]
    indices[j] = k
  }

  private func straddles(_ first: Int, _ last: Int) -> Bool {
    boundaries.contains { first < $0 && $0 < last }
  }

  // MARK: std::sort

  private func sort() {
    guard count > 1 else { return }
    introsortLoop(0, count, depth: 2 * (Int.bitWidth - 1 - count.leadingZeroBitCount))
    // The final insertion sort only reorders elements within the runs the loop left; only
    // the runs that straddle a boundary matter.
    for (lo, hi) in runs.value { insertionSort(lo, hi) }
  }

  private let runs = Box<[(Int, Int)]>([])

  private func introsortLoop(_ firstIn: Int, _ lastIn: Int, depth depthIn: Int) {
    var first = firstIn
    var last = lastIn
    var depth = depthIn
    while last - first > Self.threshold {
      guard straddles(first, last) else { return }
      if depth == 0 {
        heapSort(first, last)
        return
      }
      depth -= 1
      let cut = partitionPivot(first, last)
      introsortLoop(cut, last, depth: depth)
      last = cut
    }
    if straddles(first, last) { runs.value.append((first, last)) }
  }

  private func partitionPivot(_ first: Int, _ last: Int) -> Int {
    let mid = first + (last - first) / 2
    moveMedianToFirst(first, first + 1, mid, last - 1)
    return unguardedPartition(first + 1, last, pivot: first)
  }

  private func moveMedianToFirst(_ result: Int, _ a: Int, _ b: Int, _ c: Int) {
    if less(at: a, b) {
      if less(at: b, c) {
        swapAt(result, b)
      } else if less(at: a, c) {
        swapAt(result, c)
      } else {
        swapAt(result, a)
      }
    } else if less(at: a, c) {
      swapAt(result, a)
    } else if less(at: b, c) {
      swapAt(result, c)
    } else {
      swapAt(result, b)
    }
  }

  private func unguardedPartition(_ firstIn: Int, _ lastIn: Int, pivot: Int) -> Int {
    var first = firstIn
    var last = lastIn
    let p = values[pivot]
    while true {
      while values[first] < p { first &+= 1 }
      last &-= 1
      while p < values[last] { last &-= 1 }
      if !(first < last) { return first }
      swapAt(first, last)
      first &+= 1
    }
  }

  /// Stable insertion sort of `[first, last)`: what libstdc++'s final insertion sort does to a
  /// run whose neighbours do not compare below or above it.
  private func insertionSort(_ first: Int, _ last: Int) {
    guard last - first > 1 else { return }
    for i in (first + 1)..<last {
      let v = values[i]
      let k = indices[i]
      var j = i
      while j > first && less(v, values[j - 1]) {
        values[j] = values[j - 1]
        indices[j] = indices[j - 1]
        j -= 1
      }
      values[j] = v
      indices[j] = k
    }
  }

  // MARK: std::__partial_sort(first, last, last): make_heap, then sort_heap

  private func heapSort(_ first: Int, _ last: Int) {
    let length = last - first
    guard length >= 2 else { return }
    var parent = (length - 2) / 2
    while true {
      let v = values[first + parent]
      let k = indices[first + parent]
      adjustHeap(first, parent, length, v, k)
      if parent == 0 { break }
      parent -= 1
    }
    var end = length
    while end > 1 {
      end -= 1
      let v = values[first + end]
      let k = indices[first + end]
      values[first + end] = values[first]
      indices[first + end] = indices[first]
      adjustHeap(first, 0, end, v, k)
    }
  }

  private func adjustHeap(
    _ base: Int, _ holeIn: Int, _ length: Int, _ value: UInt32, _ index: Int32
  ) {
    var hole = holeIn
    let top = hole
    var second = hole
    while second < (length - 1) / 2 {
      second = 2 * (second + 1)
      if less(at: base + second, base + second - 1) { second -= 1 }
      values[base + hole] = values[base + second]
      indices[base + hole] = indices[base + second]
      hole = second
    }
    if length & 1 == 0 && second == (length - 2) / 2 {
      second = 2 * (second + 1)
      values[base + hole] = values[base + second - 1]
      indices[base + hole] = indices[base + second - 1]
      hole = second - 1
    }
    var p = (hole - 1) / 2
    while hole > top && less(values[base + p], value) {
      values[base + hole] = values[base + p]
      indices[base + hole] = indices[base + p]
      hole = p
      p = (hole - 1) / 2
    }
    values[base + hole] = value
    indices[base + hole] = index
  }
}

/// A mutable box, so that the emulation's non-mutating recursion can collect runs.
final class Box<T> {
  var value: T
  init(_ value: T) { self.value = value }
}

/// A set of element indices as bits.
struct Bitset: Sendable {
  private(set) var words: [UInt64]

  init(count: Int) {
    words = [UInt64](repeating: 0, count: (count + 63) / 64)
  }

  init(words: [UInt64]) {
    self.words = words
  }

  /// Inserts the first `count` of `indices`.
  mutating func insert(_ indices: UnsafePointer<Int32>, count: Int) {
    words.withUnsafeMutableBufferPointer { w in
      for p in 0..<count {
        let i = Int(indices[p])
        w[i >> 6] |= 1 << UInt64(i & 63)
      }
    }
  }
}

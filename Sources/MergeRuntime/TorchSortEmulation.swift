import CMergeSupport

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
///
/// The partitions run in the AVX2 kernel `merge_hoare_partition` when the CPU has it (the same
/// swaps in the same order as ``hoarePartition(_:_:_:pivot:offsets:_:)``, which runs otherwise;
/// the tests compare the two).
struct TorchSortEmulation {
  /// Threshold of libstdc++'s introsort (`_S_threshold`).
  static let threshold = 16

  /// Sort keys: the magnitudes' bit patterns, complemented for a descending sort, so that
  /// torch's comparator is `<` on them either way.
  private let values: UnsafeMutablePointer<UInt32>
  private let indices: UnsafeMutablePointer<Int32>
  private let count: Int
  private let boundary: Int
  /// The partition's block offsets (256 bytes), owned by the caller.
  private let offsets: UnsafeMutablePointer<UInt8>
  /// Whether the partitions run in the AVX2 kernel.
  private let kernels: Bool

  /// The elements whose magnitude bits equal `threshold` that a torch sort of `values` puts
  /// before position `boundary` (elements strictly before the threshold are all before it,
  /// and strictly after it all after, so only these need the emulation).
  ///
  /// With `kernels`, the caller ran `merge_bucket_scan`: the keys of a descending sort are
  /// complemented already, and `bucket` lists the keys of the threshold's high-bits bucket (nil
  /// when it held too many). Without, this complements them.
  ///
  /// Only the equal elements' original indices matter. With the AVX2 kernels, when they are
  /// few (at most one in 64: a bf16 task vector has a few in a thousand), they are followed by
  /// position through the partitions that straddle the boundary (``tracked``), which run on
  /// the keys alone, each handing back the keys of the side that does not straddle
  /// (`release`, element range; not when `trimsTracked` is false: keys and the result's bitset
  /// already hold less than the selection's price, and kept pages can be reused), until the
  /// range is small enough to index every element.
  ///
  /// Otherwise the first partition of the whole array is where memory goes: it runs in place
  /// on the keys, noting only which positions it swapped (a bit each). Then the keys of the
  /// side that does not straddle the boundary are handed back, after the equal elements on its
  /// left side are collected, and original indices are built for the straddling side alone,
  /// from the swaps. That holds at most 4 bytes per element of the array, then 8 per element
  /// of one side, where tracking every index would hold 8 per element throughout. The rest of
  /// the sort runs on that side only. `values` is used as scratch.
  static func tiesBefore(
    _ values: UnsafeMutablePointer<Float>, count n: Int, descending: Bool, boundary b: Int,
    threshold: UInt32, kernels: Bool, bucket: OpaquePointer?,
    release: (Range<Int>) -> Void = { _ in }, trimsTracked: Bool = true
  ) -> Bitset {
    let keys = UnsafeMutableRawPointer(values).assumingMemoryBound(to: UInt32.self)
    let tie = descending ? ~threshold : threshold
    // The equal elements are listed to be followed by position, unless there are too many or
    // the array is small: from the threshold's bucket when the selection listed it.
    var table: OpaquePointer? = nil
    let most = Self.mostFollowed(n)
    if let bucket {
      table = merge_tie_table_from_bucket(bucket, threshold & 0xFFFF, tie, most)
    } else if kernels {
      table = merge_tie_table_new(keys, n, tie, most)
    } else if descending {
      for i in 0..<n { keys[i] = ~keys[i] }
    }
    defer { merge_tie_table_free(table) }
    var ties = Bitset(count: n)
    let offsets = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
    defer { offsets.deallocate() }
    let depth = n > 1 ? 2 * (Int.bitWidth - 1 - n.leadingZeroBitCount) : 0
    guard n > Self.threshold, depth > 0, b > 0, b < n else {
      // Small: emulate the whole sort with every index.
      let indices = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, n))
      defer { indices.deallocate() }
      for i in 0..<n { indices[i] = Int32(truncatingIfNeeded: i) }
      let sorter = TorchSortEmulation(
        keys: keys, indices: indices, count: n, boundary: b, offsets: offsets, kernels: kernels)
      sorter.sort(depth: depth)
      for p in 0..<min(max(0, b), n) where keys[p] == tie { ties.insert(Int(indices[p])) }
      return ties
    }
    if let table {
      return tracked(
        keys, count: n, boundary: b, tie: tie, depth: depth, table: table, offsets: offsets,
        into: ties, release: trimsTracked ? release : { _ in })
    }
    // std::__move_median_to_first(first, first + 1, mid, last − 1), then the pivot is first.
    let median = medianPosition(keys, 1, n / 2, n - 1)
    (keys[0], keys[median]) = (keys[median], keys[0])
    func origin(_ p: Int) -> Int32 { FirstPartition.origin(p, median: median) }
    let pivot = keys[0]
    // std::__unguarded_partition(first + 1, last, first), in place on the keys. Which
    // positions were swapped is kept as two bitsets: the j-th swap paired the j-th swapped
    // position from the left with the j-th from the right, so the pairs can be listed after.
    var level0 = FirstPartition(count: n)
    let cut =
      kernels
      ? merge_hoare_partition(keys, 1, n, pivot, level0.left, level0.right, nil)
      : hoarePartition(keys, 1, n, pivot: pivot, offsets: offsets, &level0)
    let leftStraddles = b < cut
    let rightStraddles = b > cut
    if !leftStraddles {
      // The left side lies wholly before the boundary: its equal elements are in the result,
      // those swapped in (the partner's origin) and those that stayed.
      if kernels {
        ties.withUnsafeMutableWords { words in
          merge_left_ties(keys, cut, tie, level0.left, level0.right, level0.words, median, words)
        }
      } else {
        level0.forEachPair { left, right in
          if keys[left] == tie { ties.insert(Int(origin(right))) }
        }
        for p in 0..<cut where keys[p] == tie && !level0.swappedLeft(p) {
          ties.insert(Int(origin(p)))
        }
      }
    }
    // Only the straddling side, `lo..<hi`, is sorted further: the other side's keys can go,
    // and indices are needed for this side only.
    let lo = leftStraddles ? 0 : cut
    let hi = leftStraddles ? cut : (rightStraddles ? n : cut)
    if leftStraddles { release(cut..<n) } else { release(0..<cut) }
    let indices = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, hi - lo))
    defer { indices.deallocate() }
    for p in lo..<hi { indices[p &- lo] = Int32(truncatingIfNeeded: p) }
    if lo == 0 { indices[0] = Int32(truncatingIfNeeded: median) }
    if median >= lo && median < hi { indices[median - lo] = 0 }
    if kernels && (leftStraddles || rightStraddles) {
      merge_first_pairs(
        level0.left, level0.right, level0.words, leftStraddles ? 2 : 4, keys, tie, nil, indices,
        lo, median)
    } else if leftStraddles {
      level0.forEachPair { left, right in indices[left] = origin(right) }
    } else if rightStraddles {
      level0.forEachPair { left, right in indices[right - lo] = origin(left) }
    }
    level0.deallocate()
    if lo < hi {
      let sorter = TorchSortEmulation(
        keys: keys + lo, indices: indices, count: hi - lo, boundary: b - lo, offsets: offsets,
        kernels: kernels)
      sorter.sort(depth: depth - 1)
      if kernels {
        ties.withUnsafeMutableWords { words in
          merge_mark_ties(keys, lo, b, tie, nil, indices, median, words)
        }
      } else {
        for p in 0..<(b - lo) where keys[lo + p] == tie { ties.insert(Int(indices[p])) }
      }
    }
    return ties
  }

  /// Partitions of at most this many elements (or 32 per equal element) track every element's
  /// index.
  static let denseLimit = 1 << 16

  /// The most equal elements followed by position in an array of `n` (one in 64, at most 2²⁰);
  /// -1 (none) for an array of at most ``denseLimit``.
  static func mostFollowed(_ n: Int) -> Int { n > denseLimit ? min(n / 64, 1 << 20) : -1 }

  /// The ties' part of
  /// ``tiesBefore(_:count:descending:boundary:threshold:kernels:bucket:release:trimsTracked:)``
  /// with the equal elements followed by position in `table`.
  ///
  /// The introsort's partitions that straddle the boundary run on the keys alone, the side that
  /// does not straddle handed back after each, until the range is small (``denseLimit``, or 32
  /// keys per equal element) and indices are built for it.
  private static func tracked(
    _ keys: UnsafeMutablePointer<UInt32>, count n: Int, boundary b: Int, tie: UInt32,
    depth depthIn: Int, table: OpaquePointer, offsets: UnsafeMutablePointer<UInt8>,
    into tiesIn: Bitset, release: (Range<Int>) -> Void
  ) -> Bitset {
    var ties = tiesIn
    var first = 0
    var last = n
    var depth = depthIn
    // introsortLoop on the partition that holds the boundary: each side keeps depth − 1. The
    // equal elements gather around the boundary, so as the range narrows they make up more of
    // it and of its swaps: from 32 keys per equal element, indices cost less than following.
    let dense = max(Self.denseLimit, 32 * merge_tie_table_count(table))
    while last - first > dense && depth > 0 {
      depth -= 1
      let median = medianPosition(keys, first + 1, first + (last - first) / 2, last - 1)
      (keys[first], keys[median]) = (keys[median], keys[first])
      merge_tie_swapped(table, keys, first, median)
      let cut = merge_hoare_partition_tracked(keys, first + 1, last, keys[first], table)
      if b < cut {
        release(cut..<last)
        last = cut
      } else if b > cut {
        release(first..<cut)
        first = cut
      } else {
        // Neither side straddles: the sort is decided at the boundary.
        first = b
        last = b
      }
    }
    // The equal elements before the range are in the result; the range is sorted with
    // indices (only the equal elements' matter).
    let indices = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, last - first))
    defer { indices.deallocate() }
    indices.initialize(repeating: -1, count: max(1, last - first))
    ties.withUnsafeMutableWords { words in
      merge_tie_table_collect(table, first, first, last, words, indices)
    }
    if last > first {
      let sorter = TorchSortEmulation(
        keys: keys + first, indices: indices, count: last - first, boundary: b - first,
        offsets: offsets, kernels: true)
      sorter.sort(depth: depth)
      ties.withUnsafeMutableWords { words in
        merge_mark_ties(keys, first, b, tie, nil, indices, 0, words)
      }
    }
    return ties
  }

  /// The position `std::__move_median_to_first` swaps with the first: the median of `a`, `b`,
  /// `c` under `<`, with its tie rules.
  private static func medianPosition(
    _ keys: UnsafeMutablePointer<UInt32>, _ a: Int, _ b: Int, _ c: Int
  ) -> Int {
    if keys[a] < keys[b] {
      if keys[b] < keys[c] { return b }
      if keys[a] < keys[c] { return c }
      return a
    }
    if keys[a] < keys[c] { return a }
    if keys[b] < keys[c] { return c }
    return b
  }

  private init(
    keys: UnsafeMutablePointer<UInt32>, indices: UnsafeMutablePointer<Int32>, count: Int,
    boundary: Int, offsets: UnsafeMutablePointer<UInt8>, kernels: Bool
  ) {
    self.offsets = offsets
    self.kernels = kernels
    self.values = keys
    self.indices = indices
    self.count = count
    self.boundary = boundary
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
    first < boundary && boundary < last
  }

  // MARK: std::sort

  /// The sort from introsort's depth budget `depth` (`2·⌊log₂ n⌋` for a whole array).
  private func sort(depth: Int) {
    guard count > 1 else { return }
    introsortLoop(0, count, depth: depth)
    // The final insertion sort only reorders elements within the runs the loop left; only
    // the runs that straddle a boundary matter.
    for (lo, hi) in runs.value { insertionSort(lo, hi) }
  }

  private let runs = Box<[(Int, Int)]>([])

  private func introsortLoop(_ first: Int, _ lastIn: Int, depth depthIn: Int) {
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
    swapAt(result, Self.medianPosition(values, a, b, c))
  }

  private func unguardedPartition(_ first: Int, _ last: Int, pivot: Int) -> Int {
    if kernels {
      return merge_hoare_partition(values, first, last, values[pivot], nil, nil, indices)
    }
    var sink = SwapIndices(indices: indices)
    return Self.hoarePartition(
      values, first, last, pivot: values[pivot], offsets: offsets, &sink)
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

/// What a partition does besides swapping keys: told of each swap, in order.
protocol PartitionPairs {
  /// Positions `a < b` were swapped (the keys already are).
  mutating func swapped(_ a: Int, _ b: Int)
}

/// Inside the introsort: the indices move with the keys.
struct SwapIndices: PartitionPairs {
  let indices: UnsafeMutablePointer<Int32>
  @inline(__always) mutating func swapped(_ a: Int, _ b: Int) {
    let t = indices[a]
    indices[a] = indices[b]
    indices[b] = t
  }
}

/// The first partition of the whole array: which positions its swaps touched, a bit each.
///
/// The two bitsets are raw words it owns (``deallocate()``): an insert per swap is then one
/// `or` into memory, with no copy-on-write check.
struct FirstPartition: PartitionPairs {
  let words: Int
  /// Positions that were swapped from the left scan.
  let left: UnsafeMutablePointer<UInt64>
  /// Positions that were swapped from the right scan.
  let right: UnsafeMutablePointer<UInt64>

  /// Empty sets over `count` positions.
  init(count: Int) {
    words = max(1, (count + 63) / 64)
    left = .allocate(capacity: words)
    left.initialize(repeating: 0, count: words)
    right = .allocate(capacity: words)
    right.initialize(repeating: 0, count: words)
  }

  func deallocate() {
    left.deallocate()
    right.deallocate()
  }

  /// The original index of the element at `p` after the median was moved to the front.
  @inline(__always) static func origin(_ p: Int, median: Int) -> Int32 {
    Int32(truncatingIfNeeded: p == 0 ? median : (p == median ? 0 : p))
  }

  @inline(__always) mutating func swapped(_ a: Int, _ b: Int) {
    left[a >> 6] |= 1 << UInt64(a & 63)
    right[b >> 6] |= 1 << UInt64(b & 63)
  }

  /// Whether position `p` was swapped from the left.
  @inline(__always) func swappedLeft(_ p: Int) -> Bool {
    left[p >> 6] & (1 << UInt64(p & 63)) != 0
  }

  /// The swaps in the order they were made: left positions ascending with right positions
  /// descending.
  @inline(__always) func forEachPair(_ body: (Int, Int) -> Void) {
    var li = 0
    var lw = left[0]
    var ri = words - 1
    var rw = right[ri]
    while true {
      while lw == 0 {
        li &+= 1
        if li >= words { return }
        lw = left[li]
      }
      let a = li << 6 | lw.trailingZeroBitCount
      lw &= lw &- 1
      while rw == 0 {
        ri &-= 1
        if ri < 0 { return }
        rw = right[ri]
      }
      let high = 63 &- rw.leadingZeroBitCount
      let b = ri << 6 | high
      rw &= ~(1 << UInt64(high))
      body(a, b)
    }
  }
}

extension TorchSortEmulation {
  /// libstdc++'s `std::__unguarded_partition(first, last, pivot)` on `keys` (`<`): the cut,
  /// with `pairs` told of every swap in the order the scans make them.
  ///
  /// Hoare's scans stop at the `j`-th key not below the pivot from the left and the `j`-th not
  /// above it from the right, and swap those two, until they cross. So the swaps can be found a
  /// block at a time, without a branch per key (as in BlockQuicksort): the stops of a 128-key
  /// block from each end are listed, paired in order, and swapped, while the unscanned middle
  /// is longer than two blocks. The scalar loop then continues from the last swap exactly as
  /// the original would, and finds the crossing.
  @inline(__always)
  static func hoarePartition<P: PartitionPairs>(
    _ keys: UnsafeMutablePointer<UInt32>, _ firstIn: Int, _ lastIn: Int, pivot: UInt32,
    offsets: UnsafeMutablePointer<UInt8>, _ pairs: inout P
  ) -> Int {
    let block = 128
    var first = firstIn
    var last = lastIn
    var swappedFirst = 0
    var swappedLast = 0
    // Unscanned: [scanLeft, scanRight). Listed stops not yet paired: offsets from the bases.
    var scanLeft = firstIn
    var scanRight = lastIn
    var leftBase = 0
    var rightBase = 0
    var leftCount = 0
    var leftUsed = 0
    var rightCount = 0
    var rightUsed = 0
    var anySwap = false
    let leftOffsets = offsets
    let rightOffsets = offsets + block
    let p = UInt64(pivot)
    while scanRight - scanLeft > 2 * block {
      if leftUsed == leftCount {
        leftBase = scanLeft
        leftCount = 0
        leftUsed = 0
        // Branch-free: a stop is a key not below the pivot.
        for i in 0..<block {
          leftOffsets[leftCount] = UInt8(truncatingIfNeeded: i)
          leftCount &+= Int(truncatingIfNeeded: ((UInt64(keys[leftBase &+ i]) &- p) >> 63) ^ 1)
        }
        scanLeft &+= block
      }
      if rightUsed == rightCount {
        rightBase = scanRight &- 1
        rightCount = 0
        rightUsed = 0
        for i in 0..<block {
          rightOffsets[rightCount] = UInt8(truncatingIfNeeded: i)
          rightCount &+= Int(truncatingIfNeeded: ((p &- UInt64(keys[rightBase &- i])) >> 63) ^ 1)
        }
        scanRight &-= block
      }
      let count = min(leftCount - leftUsed, rightCount - rightUsed)
      if count == 0 { continue }
      for j in 0..<count {
        let a = leftBase &+ Int(leftOffsets[leftUsed &+ j])
        let b = rightBase &- Int(rightOffsets[rightUsed &+ j])
        let t = keys[a]
        keys[a] = keys[b]
        keys[b] = t
        pairs.swapped(a, b)
        swappedFirst = a
        swappedLast = b
      }
      anySwap = true
      leftUsed &+= count
      rightUsed &+= count
    }
    if anySwap {
      first = swappedFirst &+ 1
      last = swappedLast
    }
    while true {
      while keys[first] < pivot { first &+= 1 }
      last &-= 1
      while pivot < keys[last] { last &-= 1 }
      if !(first < last) { return first }
      let t = keys[first]
      keys[first] = keys[last]
      keys[last] = t
      pairs.swapped(first, last)
      first &+= 1
    }
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

  /// Calls `body` with the words, to set bits in place.
  mutating func withUnsafeMutableWords<R>(_ body: (UnsafeMutablePointer<UInt64>) -> R) -> R {
    words.withUnsafeMutableBufferPointer { w in
      guard let p = w.baseAddress else {
        var none: UInt64 = 0
        return body(&none)
      }
      return body(p)
    }
  }

  /// Adds element `i`.
  mutating func insert(_ i: Int) {
    words[i >> 6] |= 1 << UInt64(i & 63)
  }

  /// Whether element `i` is in the set.
  func contains(_ i: Int) -> Bool {
    words[i >> 6] & (1 << UInt64(i & 63)) != 0
  }
}

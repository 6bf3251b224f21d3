/// `torch.topk(x, k, largest=True)` on the CPU, reproduced exactly: which elements it returns
/// when values tie at the k-th largest.
///
/// torch fills a queue of (value, index) pairs in index order and, for `k·64 ≤ n`, runs
/// libstdc++'s `std::partial_sort`; otherwise `std::nth_element` (introselect: median-of-three
/// partitions down to 3 elements, then insertion sort). Both are reproduced here with torch's
/// comparator (NaN first, then larger).
enum TorchSelectEmulation {
  static func topK(_ values: [Float], k: Int) -> [Int] {
    let n = values.count
    guard k > 0 else { return [] }
    guard k < n else { return Array(0..<n) }
    var a = values.enumerated().map { ($0.element, $0.offset) }
    func less(_ x: Float, _ y: Float) -> Bool { (x.isNaN && !y.isNaN) || x > y }
    if k * 64 <= n {
      partialSort(&a, middle: k, less)
    } else {
      nthElement(&a, nth: k - 1, less)
    }
    return a[0..<k].map(\.1)
  }

  /// `std::__introselect` then `std::__insertion_sort`.
  static func nthElement(_ a: inout [(Float, Int)], nth: Int, _ less: (Float, Float) -> Bool) {
    var first = 0
    var last = a.count
    var depth = 2 * (Int.bitWidth - 1 - a.count.leadingZeroBitCount)
    func lt(_ i: Int, _ j: Int) -> Bool { less(a[i].0, a[j].0) }
    while last - first > 3 {
      if depth == 0 {
        heapSelect(&a, first, nth + 1, last, less)
        a.swapAt(first, nth)
        return
      }
      depth -= 1
      let mid = first + (last - first) / 2
      let x = first + 1
      let y = mid
      let z = last - 1
      if lt(x, y) {
        if lt(y, z) {
          a.swapAt(first, y)
        } else if lt(x, z) {
          a.swapAt(first, z)
        } else {
          a.swapAt(first, x)
        }
      } else if lt(x, z) {
        a.swapAt(first, x)
      } else if lt(y, z) {
        a.swapAt(first, z)
      } else {
        a.swapAt(first, y)
      }
      var lo = first + 1
      var hi = last
      while true {
        while lt(lo, first) { lo += 1 }
        hi -= 1
        while lt(first, hi) { hi -= 1 }
        if !(lo < hi) { break }
        a.swapAt(lo, hi)
        lo += 1
      }
      let cut = lo
      if cut <= nth { first = cut } else { last = cut }
    }
    // Insertion sort of the remaining range.
    if last - first > 1 {
      for i in (first + 1)..<last {
        let v = a[i]
        var j = i
        while j > first && less(v.0, a[j - 1].0) {
          a[j] = a[j - 1]
          j -= 1
        }
        a[j] = v
      }
    }
  }

  /// `std::__partial_sort(first, middle, last)`: heap select, then sort the heap.
  static func partialSort(_ a: inout [(Float, Int)], middle: Int, _ less: (Float, Float) -> Bool) {
    heapSelect(&a, 0, middle, a.count, less)
    var end = middle
    while end > 1 {
      end -= 1
      let v = a[end]
      a[end] = a[0]
      adjustHeap(&a, 0, 0, end, v, less)
    }
  }

  static func heapSelect(
    _ a: inout [(Float, Int)], _ first: Int, _ middle: Int, _ last: Int,
    _ less: (Float, Float) -> Bool
  ) {
    let length = middle - first
    if length >= 2 {
      var parent = (length - 2) / 2
      while true {
        adjustHeap(&a, first, parent, length, a[first + parent], less)
        if parent == 0 { break }
        parent -= 1
      }
    }
    var i = middle
    while i < last {
      if less(a[i].0, a[first].0) {
        let v = a[i]
        a[i] = a[first]
        adjustHeap(&a, first, 0, length, v, less)
      }
      i += 1
    }
  }

  static func adjustHeap(
    _ a: inout [(Float, Int)], _ base: Int, _ holeIn: Int, _ length: Int, _ value: (Float, Int),
    _ less: (Float, Float) -> Bool
  ) {
    var hole = holeIn
    let top = hole
    var second = hole
    while second < (length - 1) / 2 {
      second = 2 * (second + 1)
      if less(a[base + second].0, a[base + second - 1].0) { second -= 1 }
      a[base + hole] = a[base + second]
      hole = second
    }
    if length & 1 == 0 && second == (length - 2) / 2 {
      second = 2 * (second + 1)
      a[base + hole] = a[base + second - 1]
      hole = second - 1
    }
    var p = (hole - 1) / 2
    while hole > top && less(a[base + p].0, value.0) {
      a[base + hole] = a[base + p]
      hole = p
      p = (hole - 1) / 2
    }
    a[base + hole] = value
  }
}

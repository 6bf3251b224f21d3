import Testing
import _TestSupport

@testable import MergeRuntime

/// The selection's torch-order prefix against a plain full `std::sort`, on arrays with many
/// equal magnitudes, so that boundaries split runs of ties.
@Suite struct TorchSortTests {
  /// The elements `prefix` keeps, read back through `Cut.select` on the magnitudes; the
  /// scratch it releases is overwritten at once.
  static func kept(_ values: [Float], rank: Int, descending: Bool, kernels: Bool) -> Set<Int> {
    var scratch = values.map(\.magnitude)
    let x = scratch
    let cut = scratch.withUnsafeMutableBufferPointer { buffer in
      buffer.baseAddress.map { base in
        // What is released must never be read again: poison it.
        TensorExecutor.prefix(
          of: base, count: values.count, rank: rank, descending: descending, kernels: kernels,
          release: { range in for i in range { base[i] = Float(bitPattern: 0x5A5A_5A5A) } })
      }
    }
    var out = [Float](repeating: 0, count: x.count)
    x.withUnsafeBufferPointer { xs in
      out.withUnsafeMutableBufferPointer { o in
        guard let cut, let xp = xs.baseAddress, let op = o.baseAddress else { return }
        cut.select(xp, op, xs.count, first: 0, keepInside: true)
      }
    }
    // In place, as the fused kernels call it, the same.
    var inPlace = x
    inPlace.withUnsafeMutableBufferPointer { b in
      guard let cut, let p = b.baseAddress else { return }
      cut.select(p, p, b.count, first: 0, keepInside: true)
    }
    let differing = zip(inPlace, out).filter { $0.bitPattern != $1.bitPattern }.count
    #expect(differing == 0, "in place: \(differing) entries differ")
    // Kept: multiplied by 1, so unchanged (every value is nonzero; ∞·0 is NaN, not ∞). A NaN
    // reads the same either way (NaN·0 is NaN), so NaNs are left out of the comparison.
    return Set(out.indices.filter { !x[$0].isNaN && out[$0].bitPattern == x[$0].bitPattern })
  }

  /// The Swift partitions, and the AVX2 ones where the CPU has them.
  static let kernelChoices = Kernels.avx2 ? [false, true] : [false]

  /// Expects the prefix of `rank` to keep `order`'s first `rank` elements (NaNs aside), with
  /// the Swift partitions and the AVX2 ones.
  static func expectSortOrder(
    _ v: [Float], _ order: [Int], rank: Int, descending: Bool, _ context: String
  ) {
    for kernels in kernelChoices {
      let wrong = kept(v, rank: rank, descending: descending, kernels: kernels)
        .symmetricDifference(order[0..<rank].filter { !v[$0].isNaN })
      #expect(
        wrong.isEmpty,
        "\(context) rank \(rank) descending \(descending) kernels \(kernels): \(wrong.count) differ"
      )
    }
  }

  /// Original indices in the order a full `std::sort` of the magnitudes leaves them.
  static func sorted(_ values: [Float], descending: Bool) -> [Int] {
    var a = values.enumerated().map { ($0.element.magnitude, $0.offset) }
    referenceStdSort(&a, descending ? KernelReferenceTests.desc : KernelReferenceTests.asc)
    return a.map(\.1)
  }

  /// Nonzero values from a few magnitudes and both signs: long runs of ties.
  ///
  /// With `special`, about one in a thousand is NaN or −∞ (torch's descending order puts NaN
  /// first).
  static func values(_ n: Int, distinct: Int, special: Bool = false, _ rng: inout SplitMix64)
    -> [Float]
  {
    (0..<n).map { _ in
      if special && rng.next() % 1000 == 0 { return rng.next() & 1 == 0 ? .nan : -.infinity }
      let m = Float(1 + Int(rng.next() % UInt64(distinct))) * 0.125
      return rng.next() & 1 == 0 ? m : -m
    }
  }

  @Test("every boundary of small arrays (the first partition's cut included) matches std::sort")
  func everyBoundary() {
    var rng = SplitMix64(state: 7)
    for n in [17, 40, 300, 700] {
      for descending in [true, false] {
        let v = Self.values(n, distinct: 5, &rng)
        let order = Self.sorted(v, descending: descending)
        for rank in 1..<n {
          Self.expectSortOrder(v, order, rank: rank, descending: descending, "n \(n)")
        }
      }
    }
  }

  @Test(
    "large arrays (many 128-key partition blocks) match std::sort at random boundaries",
    arguments: [1, 3, 40, 1000])
  func large(distinct: Int) {
    var rng = SplitMix64(state: UInt64(distinct))
    // Past 64 Ki elements with few equal ones, the AVX2 path follows those by position through
    // the first partitions; 600,001 takes it several levels deep.
    for n in distinct == 1000 ? [5_000, 150_001, 600_001] : [5_000, 150_001] {
      let v = Self.values(n, distinct: distinct, special: distinct == 40, &rng)
      for descending in [true, false] {
        let order = Self.sorted(v, descending: descending)
        for _ in 0..<3 {
          let rank = 1 + Int(rng.next() % UInt64(n - 1))
          Self.expectSortOrder(
            v, order, rank: rank, descending: descending, "n \(n) distinct \(distinct)")
        }
      }
    }
  }
}

extension TorchSortTests {
  @Test("a crowded high-bits bucket with few equal magnitudes (the equal ones found by a scan)")
  func crowdedBucket() {
    var rng = SplitMix64(state: 77)
    // Magnitudes 1 + k·2⁻²⁰ share their high 16 bits: more of the array than the bucket list
    // holds (one in 64), while each value has about 37 equal ones.
    let n = 150_001
    let v = (0..<n).map { _ -> Float in
      let m = 1 + Float(rng.next() % 4096) * 0x1p-20
      return rng.next() & 1 == 0 ? m : -m
    }
    for descending in [true, false] {
      let order = Self.sorted(v, descending: descending)
      for _ in 0..<3 {
        let rank = 1 + Int(rng.next() % UInt64(n - 1))
        Self.expectSortOrder(v, order, rank: rank, descending: descending, "crowded")
      }
    }
  }
}

@Suite struct RadixSelectTests {
  @Test("radix selection counts the same on any number of lanes, and finds the k-th magnitude")
  func lanes() {
    var rng = SplitMix64(state: 11)
    let n = 1_100_000  // over the 1 Mi elements from which lanes split the count
    let values = (0..<n).map { _ in Float(rng.next() % 5000) * 0.001 }
    let sorted = values.sorted()
    values.withUnsafeBufferPointer { v in
      guard let p = v.baseAddress else { return }
      let raw = UnsafeRawPointer(p).assumingMemoryBound(to: UInt32.self)
      #expect(
        TensorExecutor.histogram(raw, count: n, lanes: 1, within: nil)
          == TensorExecutor.histogram(raw, count: n, lanes: 3, within: nil))
      for rank in [0, 1, n / 3, n / 2, n - 1] {
        let one = TensorExecutor.radixSelect(p, count: n, rank: rank, lanes: 1)
        let three = TensorExecutor.radixSelect(p, count: n, rank: rank, lanes: 3)
        #expect(one == three)
        #expect(one.threshold == sorted[rank].bitPattern)
        #expect(one.tiesBelow == rank - (sorted.firstIndex(of: sorted[rank]) ?? 0))
      }
    }
  }
}

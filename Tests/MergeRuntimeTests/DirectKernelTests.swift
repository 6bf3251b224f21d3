import CMergeSupport
import MergeCompiler
import MergeModel
import Testing
import _TestSupport

@testable import MergeRuntime

/// The AVX2 kernels of TIES and task arithmetic against the Swift steps they replace, on arrays
/// of more than one 64 Ki block with special values: the same bits, or the same swaps in the
/// same order.
@Suite(.enabled(if: Kernels.avx2, "the CPU has no AVX2"))
struct DirectKernelTests {
  /// Special f32 values: ±0, ±∞, NaN (quiet, with payload, negative), subnormals, extremes.
  static let specials: [Float] = [
    0, -0.0, .infinity, -.infinity, .nan, Float(bitPattern: 0x7FC0_1234),
    Float(bitPattern: 0xFFC0_0000), 1e-40, -1e-40, .leastNonzeroMagnitude, 3e38, -3e38,
    .greatestFiniteMagnitude,
  ]

  /// `n` values from a few magnitudes and both signs (many ties), with a special value about
  /// once in 200, rounded to bf16 when `bf16`.
  static func values(_ n: Int, _ rng: inout SplitMix64, bf16: Bool) -> [Float] {
    (0..<n).map { _ in
      let v: Float
      if rng.next() % 200 == 0 {
        v = specials[Int(rng.next() % UInt64(specials.count))]
      } else {
        let m = Float(1 + Int(rng.next() % 40)) * 0.015625
        v = rng.next() & 1 == 0 ? m : -m
      }
      return bf16 ? FloatConversion.float(fromBFloat16: FloatConversion.bfloat16(from: v)) : v
    }
  }

  /// Calls `body` with a pointer to each array's elements.
  static func withPointers<T, R>(
    _ arrays: ArraySlice<[T]>, _ done: [UnsafePointer<T>?] = [], _ body: ([UnsafePointer<T>?]) -> R
  ) -> R {
    guard let array = arrays.first else { return body(done) }
    return array.withUnsafeBufferPointer { p in
      withPointers(arrays.dropFirst(), done + [p.baseAddress], body)
    }
  }

  /// Whether two bf16 values have the same bits, NaNs being equal whatever their sign and
  /// payload: which NaN an addition of two NaNs returns depends on the order of its operands,
  /// which compilers choose (Swift's loops and the C kernels differ there).
  static func same(_ a: UInt16, _ b: UInt16) -> Bool {
    a == b || (a & 0x7FFF > 0x7F80 && b & 0x7FFF > 0x7F80)
  }

  /// A partition's swaps, listed.
  struct Pairs: PartitionPairs {
    var list: [Int] = []
    mutating func swapped(_ a: Int, _ b: Int) { list += [a, b] }
  }

  @Test("the AVX2 partition makes the Swift partition's swaps, in order, on keys with ties")
  func partition() {
    var rng = SplitMix64(state: 5)
    let offsets = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
    defer { offsets.deallocate() }
    let extremes: [UInt32] = [0, 0xFFFF_FFFF, 0x8000_0000, 0x7FFF_FFFF, 0x7FC0_0000]
    for n in [40, 300, 5_000, 150_001] {
      for distinct in [2, 7, 1000] {
        var keys = (0..<n).map { _ in
          rng.next() % 100 == 0
            ? extremes[Int(rng.next() % 5)] : UInt32(rng.next() % UInt64(distinct)) &* 977
        }
        // The median of three at the front, as the introsort leaves it: it guards both scans.
        let probe = [1, n / 2, n - 1].sorted { keys[$0] < keys[$1] }
        keys.swapAt(0, probe[1])
        let pivot = keys[0]
        // Swift, swaps listed; AVX2, swaps as bits; AVX2 and Swift with indices following.
        var swift = keys
        var pairs = Pairs()
        let cut = swift.withUnsafeMutableBufferPointer { k in
          k.baseAddress.map {
            TorchSortEmulation.hoarePartition($0, 1, n, pivot: pivot, offsets: offsets, &pairs)
          } ?? 0
        }
        var avx = keys
        let words = (n + 63) / 64
        var left = [UInt64](repeating: 0, count: words)
        var right = left
        let avxCut = avx.withUnsafeMutableBufferPointer { k in
          merge_hoare_partition(k.baseAddress, 1, n, pivot, &left, &right, nil)
        }
        #expect(avxCut == cut, "n \(n) distinct \(distinct)")
        #expect(avx == swift, "n \(n) distinct \(distinct)")
        var expectLeft = [UInt64](repeating: 0, count: words)
        var expectRight = expectLeft
        for j in stride(from: 0, to: pairs.list.count, by: 2) {
          let (a, b) = (pairs.list[j], pairs.list[j + 1])
          expectLeft[a >> 6] |= 1 << UInt64(a & 63)
          expectRight[b >> 6] |= 1 << UInt64(b & 63)
        }
        #expect(left == expectLeft && right == expectRight, "n \(n) distinct \(distinct)")
        #expect(pairs.list.count > 2)

        var withIndices = keys
        var indices = (0..<n).map { Int32($0) }
        var swiftIndexed = keys
        var swiftIndices = indices
        let indexedCut = withIndices.withUnsafeMutableBufferPointer { k in
          indices.withUnsafeMutableBufferPointer { i in
            merge_hoare_partition(k.baseAddress, 1, n, pivot, nil, nil, i.baseAddress)
          }
        }
        let swiftIndexedCut = swiftIndexed.withUnsafeMutableBufferPointer { k in
          swiftIndices.withUnsafeMutableBufferPointer { i -> Int in
            guard let keys = k.baseAddress, let indices = i.baseAddress else { return 0 }
            var sink = SwapIndices(indices: indices)
            return TorchSortEmulation.hoarePartition(
              keys, 1, n, pivot: pivot, offsets: offsets, &sink)
          }
        }
        #expect(indexedCut == cut && swiftIndexedCut == cut)
        #expect(withIndices == swift && swiftIndexed == swift)
        #expect(indices == swiftIndices)
      }
    }
  }

  /// One fused-consensus case: its cuts, scales, weights, normalization and λ.
  struct Case {
    var cuts: [Cut]
    var scales: [Float?]
    var weights: [Float]
    var normalize: Bool
    var lambda: Float?
  }

  /// The cuts of `m` task vectors over `n` elements from `first`: each kind in turn, with
  /// thresholds taken from the data and tie sets of random members.
  static func cases(m: Int, taus: [[Float]], first: Int, _ rng: inout SplitMix64) -> [Case] {
    let n = taus[0].count
    func threshold(_ k: Int) -> UInt32 {
      taus[k][Int(rng.next() % UInt64(n))].magnitude.bitPattern
    }
    var result: [Case] = []
    for variant in 0..<4 {
      var cuts: [Cut] = []
      for k in 0..<m {
        switch (k + variant) % 5 {
        case 0: cuts.append(Cut(kind: .threshold(threshold(k), ties: true, descending: true)))
        case 1: cuts.append(Cut(kind: .threshold(threshold(k), ties: false, descending: true)))
        case 2:
          var ties = Bitset(count: first + n)
          for _ in 0..<(n / 50) { ties.insert(first + Int(rng.next() % UInt64(n))) }
          cuts.append(Cut(kind: .thresholdWithTies(threshold(k), descending: true, ties: ties)))
        case 3: cuts.append(Cut(kind: .everything))
        default: cuts.append(Cut(kind: .nothing))
        }
      }
      let weights = (0..<m).map { k in Float(k % 3) * 0.25 - 0.3 + (variant == 3 ? 0.3 : 0) }
      result.append(
        Case(
          cuts: cuts, scales: weights.enumerated().map { $0.offset % 2 == 0 ? $0.element : nil },
          weights: weights, normalize: variant % 2 == 0, lambda: variant < 2 ? 1.5 : nil))
    }
    return result
  }

  /// The executor's Swift steps for the fused consensus (what `BlockEvaluator` runs without
  /// the kernel).
  static func reference(base: [Float], xs: [[Float]], first: Int, _ c: Case) -> [Float] {
    let n = base.count
    var terms = xs.map { x in zip(x, base).map { $0 - $1 } }
    for k in terms.indices {
      terms[k].withUnsafeMutableBufferPointer { t in
        guard let p = t.baseAddress else { return }
        c.cuts[k].select(p, p, n, first: first, keepInside: true)
        if let s = c.scales[k] { Kernels.scale(p, s, p, n) }
      }
    }
    var out = [Float](repeating: 0, count: n)
    var total = out
    var divisor = out
    withPointers(terms[...]) { d in
      let rows = d.compactMap { $0 }
      rows.withUnsafeBufferPointer { d in
        c.weights.withUnsafeBufferPointer { w in
          Kernels.signConsensus(
            d, w, &out, n, normalize: c.normalize, total: &total, divisor: &divisor)
        }
      }
    }
    if let l = c.lambda { out = out.map { $0 * l } }
    return zip(base, out).map { $0 + $1 }
  }

  @Test("the fused consensus kernels give the Swift steps' bits, f32 and bf16 in and out")
  func fusedConsensus() {
    var rng = SplitMix64(state: 17)
    let n = 70_001
    let first = 65_536
    for m in [1, 3, 8] {
      for bf16 in [false, true] {
        let base = Self.values(n, &rng, bf16: bf16)
        let xs = (0..<m).map { _ in Self.values(n, &rng, bf16: bf16) }
        let taus = xs.map { x in zip(x, base).map { $0 - $1 } }
        for c in Self.cases(m: m, taus: taus, first: first, &rng) {
          let expected = Self.reference(base: base, xs: xs, first: first, c)
          // Through the executor's wrapper, which hands the kernels their arguments.
          let op = Op.fusedConsensus(
            weights: c.weights, scales: c.scales, normalize: c.normalize, lambda: c.lambda)
          guard let kernel = ConsensusKernel(op, cuts: c.cuts) else {
            Issue.record("m \(m): the kernel does not take this case")
            continue
          }
          if bf16 {
            let b16 = base.map(FloatConversion.bfloat16(from:))
            let x16 = xs.map { $0.map(FloatConversion.bfloat16(from:)) }
            var out = [UInt16](repeating: 0, count: n)
            Self.withPointers(x16[...]) { kernel.run(base: b16, $0, first: first, into: &out, n) }
            let want = expected.map(FloatConversion.bfloat16(from:))
            let wrong = zip(out, want).filter { !Self.same($0, $1) }.count
            #expect(wrong == 0, "m \(m) bf16: \(wrong) of \(n) differ")
          } else {
            var out = [Float](repeating: 0, count: n)
            Self.withPointers(xs[...]) { kernel.run(base: base, $0, first: first, into: &out, n) }
            let wrong = zip(out, expected).filter {
              $0.bitPattern != $1.bitPattern && !($0.isNaN && $1.isNaN)
            }.count
            #expect(wrong == 0, "m \(m) f32: \(wrong) of \(n) differ")
          }
        }
      }
    }
  }

  @Test("the task-sum kernel gives the Swift fused sum's bits, rounded to bf16")
  func taskSum() {
    var rng = SplitMix64(state: 29)
    let n = 70_001
    for m in [1, 3, 8] {
      let base = Self.values(n, &rng, bf16: true)
      let xs = (0..<m).map { _ in Self.values(n, &rng, bf16: true) }
      let weights = (0..<m).map { Float($0 % 3) * 0.4 - 0.35 }
      for (divisor, lambda) in [(nil, nil), (Float(0.9), Float(1.5)), (nil, Float(-2)), (3, nil)]
        as [(Float?, Float?)]
      {
        var expected = [Float](repeating: 0, count: n)
        Self.withPointers(xs[...]) { pointers in
          let rows = pointers.compactMap { $0 }
          rows.withUnsafeBufferPointer { x in
            weights.withUnsafeBufferPointer { w in
              Kernels.fusedTaskSum(
                base, x, w, &expected, n, divisor: divisor, lambda: lambda)
            }
          }
        }
        let b16 = base.map(FloatConversion.bfloat16(from:))
        let x16 = xs.map { $0.map(FloatConversion.bfloat16(from:)) }
        var out = [UInt16](repeating: 0, count: n)
        Self.withPointers(x16[...]) { pointers in
          merge_fused_task_sum_bf16(
            b16, pointers, Int32(m), weights, divisor == nil ? 0 : 1, divisor ?? 1,
            lambda == nil ? 0 : 1, lambda ?? 1, &out, n)
        }
        let want = expected.map(FloatConversion.bfloat16(from:))
        let wrong = zip(out, want).filter { !Self.same($0, $1) }.count
        #expect(wrong == 0, "m \(m) divisor \(String(describing: divisor)): \(wrong) differ")
        #expect(want.contains { $0 & 0x7FFF > 0x7F80 })
      }
    }
  }

  @Test("the gather kernel gives |x − base| and the executor's histogram of its high bits")
  func gather() {
    var rng = SplitMix64(state: 23)
    let n = 70_001
    let x = Self.values(n, &rng, bf16: true).map(FloatConversion.bfloat16(from:))
    let base = Self.values(n, &rng, bf16: true).map(FloatConversion.bfloat16(from:))
    let expected = (0..<n).map {
      (FloatConversion.float(fromBFloat16: x[$0]) - FloatConversion.float(fromBFloat16: base[$0]))
        .magnitude
    }
    #expect(expected.contains { $0.isNaN } && expected.contains { $0.isInfinite })
    let bits = expected.map(\.bitPattern)
    let histogram = bits.withUnsafeBufferPointer { b in
      b.baseAddress.map { TensorExecutor.histogram($0, count: n, lanes: 1, within: nil) } ?? []
    }
    // Twice: the second gather counts into a table the first gave back to the pool. The first
    // writes to 32-byte aligned memory (streaming stores), the second 4 bytes past it.
    let memory = UnsafeMutableRawPointer.allocate(byteCount: 4 * n + 32, alignment: 32)
    defer { memory.deallocate() }
    for round in 0..<2 {
      let out = (memory + 4 * round).bindMemory(to: Float.self, capacity: n)
      out.initialize(repeating: 0, count: n)
      let table = HistogramTable.take()
      merge_gather_bf16(x, base, out, n, table.counts)
      let wrong = (0..<n).filter { out[$0].bitPattern != expected[$0].bitPattern }.count
      #expect(wrong == 0, "round \(round)")
      var counted = [Int](repeating: 0, count: 65536)
      table.drain(into: &counted)
      #expect(counted == histogram, "round \(round)")
      #expect((0..<(4 * 65536)).allSatisfy { table.counts[$0] == 0 }, "round \(round)")
      HistogramTable.giveBack([table])
    }
  }
}

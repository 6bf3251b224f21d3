import CMergeSupport
import Dispatch
import MergeModel
import Synchronization

/// One tensor's task vectors in memory, and the passes `merge analyze` makes over them.
///
/// Each fine-tune's τ is held as f32 in memory allocated once for the largest tensor. Work is
/// split into fixed chunks of `chunk` entries whatever the number of threads, and each chunk's
/// sums go to its own slot, added in chunk order: the figures are the same on any thread count.
/// Workers write disjoint chunk ranges of the buffers; the scratch outlives every pass.
final class TauScratch: @unchecked Sendable {
  /// Entries per chunk (1 << 16 but in tests).
  let chunk: Int
  /// A magnitude's f32 bit pattern (sign cleared) is split into 16 high and 15 low bits.
  static let highBins = 1 << 16
  static let lowBins = 1 << 15

  let taus: [UnsafeMutablePointer<Float>]
  let models: Int
  /// The entries of the tensor being analyzed.
  private(set) var count = 0

  /// Whether the passes use the AVX2 kernels (`merge_kernels.h`): when the CPU has them,
  /// unless asked not to (tests compare both).
  let kernels: Bool

  init(models: Int, capacity: Int, chunk: Int = 1 << 16, kernels: Bool = true) {
    self.models = models
    self.chunk = chunk
    self.kernels = kernels && Kernels.avx2
    taus = (0..<models).map { _ in .allocate(capacity: max(1, capacity)) }
  }

  deinit { for p in taus { p.deallocate() } }

  /// Pass 1's figures for one tensor.
  struct Loaded {
    var sums: InterferenceReport.Sums
    var baseNorm = 0.0
    var changed: [Int]
    /// Entries per high bin, `highBins` per fine-tune.
    var histogram: [Int]
  }

  /// One chunk's part of pass 1.
  private struct ChunkSums {
    var dots: [Double]
    var baseNorm = 0.0
    var changed: [Int]
    var shared = 0
    var conflicting = 0
  }

  /// Runs `worker` on up to `threads` threads; each takes chunks from the queue it is given.
  private static func parallel(
    chunks: Int, threads: Int, _ worker: @Sendable (_ next: () -> Int?) -> Void
  ) {
    let counter = Atomic<Int>(0)
    DispatchQueue.concurrentPerform(iterations: max(1, min(threads, chunks))) { _ in
      worker {
        let c = counter.add(1, ordering: .relaxed).oldValue
        return c < chunks ? c : nil
      }
    }
  }

  /// A worker's buffer of `count` elements set to `zero`; the worker deallocates it.
  private static func buffer<T>(_ count: Int, _ zero: T) -> UnsafeMutablePointer<T> {
    let p = UnsafeMutablePointer<T>.allocate(capacity: max(1, count))
    p.initialize(repeating: zero, count: max(1, count))
    return p
  }

  private func range(_ c: Int) -> Range<Int> {
    c * chunk..<min(count, (c + 1) * chunk)
  }

  private func chunks(_ count: Int) -> Int { (count + chunk - 1) / chunk }

  /// Pass 1: τᵢ = fineᵢ − base into memory, with their dot products, ‖base‖², changed entries,
  /// the entries two or more τ change and those whose signs disagree, and the magnitudes'
  /// histogram by high bits.
  func load(base: TensorView, fine: [TensorView], threads: Int) -> Loaded {
    count = base.count
    let n = models
    let chunkCount = chunks(count)
    let slots = Mutex([ChunkSums?](repeating: nil, count: chunkCount))
    let histogram = Mutex([Int](repeating: 0, count: n * Self.highBins))
    Self.parallel(chunks: chunkCount, threads: threads) { next in
      let values = Self.buffer(chunk, Float(0))
      // The f64 copies only where the step-by-step pass needs them.
      let wide = Self.buffer(kernels && n <= 4 ? 1 : n * chunk, 0.0)
      let counts = Counts(words: Self.buffer(chunk, UInt32(0)), kernels: kernels)
      // Two histograms per fine-tune, for even and odd entries: increments of one bin in a
      // row wait for each other.
      let bins = Self.buffer(2 * n * Self.highBins, UInt32(0))
      defer {
        values.deallocate()
        wide.deallocate()
        counts.words.deallocate()
        bins.deallocate()
      }
      while let c = next() {
        let r = range(c)
        let len = r.count
        var s = ChunkSums(
          dots: [Double](repeating: 0, count: n * n), changed: [Int](repeating: 0, count: n))
        if kernels && n <= 4 {
          s.baseNorm = fused(base: base, fine: fine, r, values: values, into: &s)
        } else {
          separate(
            base: base, fine: fine, r, values: values, wide: wide, counts: counts, into: &s)
        }
        // The inputs are read once: their pages leave the process as they are, 16 chunks at a
        // time (each release costs the other core a TLB flush).
        if (c + 1) % 16 == 0 || c == chunkCount - 1 {
          let done = (c / 16 * 16 * chunk)..<r.upperBound
          base.release(done)
          for view in fine { view.release(done) }
        }
        for i in 0..<n {
          Self.countHighBits(
            taus[i] + r.lowerBound, len, into: bins + 2 * i * Self.highBins,
            bins + (2 * i + 1) * Self.highBins)
        }
        slots.withLock { $0[c] = s }
      }
      histogram.withLock { h in
        for i in h.indices {
          let (model, bin) = i.quotientAndRemainder(dividingBy: Self.highBins)
          h[i] +=
            Int(bins[2 * model * Self.highBins + bin])
            + Int(bins[(2 * model + 1) * Self.highBins + bin])
        }
      }
    }
    var loaded = Loaded(
      sums: InterferenceReport.Sums(models: n), changed: [Int](repeating: 0, count: n),
      histogram: histogram.withLock { $0 })
    for case let s? in slots.withLock({ $0 }) {
      for i in 0..<n {
        for j in i..<n { loaded.sums.dots[i][j] += s.dots[i * n + j] }
        loaded.changed[i] += s.changed[i]
      }
      loaded.baseNorm += s.baseNorm
      loaded.sums.shared += s.shared
      loaded.sums.conflicting += s.conflicting
    }
    for i in 0..<n { for j in 0..<i { loaded.sums.dots[i][j] = loaded.sums.dots[j][i] } }
    return loaded
  }

  /// Pass 2: the exact k-th largest magnitude of each cut.
  ///
  /// It comes from the low bits of the entries in its high bin; for the cuts that ask
  /// (`wantsSquares`), so does the sum of the k largest squares. One pass per fine-tune serves
  /// all its cuts.
  func refine(_ cuts: inout [MagnitudeCut], count: Int, threads: Int) {
    let chunkCount = chunks(count)
    let m = cuts.count
    let fixed = cuts
    let byModel = (0..<models).map { i in fixed.indices.filter { fixed[$0].model == i } }
    let slots = Mutex([[Double]?](repeating: nil, count: chunkCount))
    let low = Mutex([Int](repeating: 0, count: m * Self.lowBins))
    Self.parallel(chunks: chunkCount, threads: threads) { next in
      let bins = Self.buffer(m * Self.lowBins, UInt32(0))
      defer { bins.deallocate() }
      while let c = next() {
        let r = range(c)
        var squares = [Double](repeating: 0, count: m)
        for (i, indices) in byModel.enumerated() {
          let t = UnsafePointer(taus[i] + r.lowerBound)
          let summed = indices.filter { fixed[$0].wantsSquares }
          let sums = lowBits(
            t, r.count, inBins: indices.map { fixed[$0].high },
            into: indices.map { bins + $0 * Self.lowBins },
            squaresAbove: summed.map { fixed[$0].high })
          for (j, sum) in zip(summed, sums) { squares[j] = sum }
        }
        slots.withLock { $0[c] = squares }
      }
      low.withLock { h in for i in h.indices { h[i] += Int(bins[i]) } }
    }
    let histogram = low.withLock { $0 }
    var above = [Double](repeating: 0, count: m)
    for case let s? in slots.withLock({ $0 }) { for j in 0..<m { above[j] += s[j] } }
    for j in 0..<m {
      cuts[j].settle(
        low: histogram[(j * Self.lowBins)..<((j + 1) * Self.lowBins)], squaresAbove: above[j])
    }
  }

  /// Pass 1 over chunk `r` step by step (more than four fine-tunes, or no AVX2): each τ and an
  /// f64 copy of it, the dot products of the copies, then the changed entries and signs through
  /// a counts word per entry.
  private func separate(
    base: TensorView, fine: [TensorView], _ r: Range<Int>, values: UnsafeMutablePointer<Float>,
    wide: UnsafeMutablePointer<Double>, counts: Counts, into s: inout ChunkSums
  ) {
    let n = models
    let len = r.count
    if kernels, let src = Self.bf16(base, r) {
      merge_bf16_subtract_widen(src, nil, values, wide, len)
    } else {
      base.decode(r, into: UnsafeMutableBufferPointer(start: values, count: len))
      if kernels {
        merge_subtract_widen(values, nil, wide, len)
      } else {
        for e in 0..<len { wide[e] = Double(values[e]) }
      }
    }
    s.baseNorm = dot(wide, wide, len)
    for i in 0..<n {
      let t = taus[i] + r.lowerBound
      let d = wide + i * chunk
      if kernels, let src = Self.bf16(fine[i], r) {
        merge_bf16_subtract_widen(src, values, t, d, len)
        continue
      }
      fine[i].decode(r, into: UnsafeMutableBufferPointer(start: t, count: len))
      if kernels {
        merge_subtract_widen(t, values, d, len)
        continue
      }
      for e in 0..<len {
        t[e] -= values[e]
        d[e] = Double(t[e])
      }
    }
    for i in 0..<n {
      for j in i..<n { s.dots[i * n + j] = dot(wide + i * chunk, wide + j * chunk, len) }
    }
    // Changed entries and their signs: the entries whose magnitude is above zero's.
    for i in 0..<n {
      s.changed[i] = counts.add(UnsafePointer(taus[i] + r.lowerBound), len, from: 1, first: i == 0)
    }
    let tally = counts.tally(len)
    s.shared = tally.shared
    s.conflicting = tally.conflicting
  }

  /// Pass 1 over chunk `r` by the AVX2 kernels (four fine-tunes at most): each τ into memory,
  /// then the dot products, changed entries and signs into `s`, without f64 copies or a counts
  /// word per entry; returns ‖base‖².
  private func fused(
    base: TensorView, fine: [TensorView], _ r: Range<Int>, values: UnsafeMutablePointer<Float>,
    into s: inout ChunkSums
  ) -> Double {
    let n = models
    let len = r.count
    if let src = Self.bf16(base, r) {
      merge_bf16_subtract_widen(src, nil, values, nil, len)
    } else {
      base.decode(r, into: UnsafeMutableBufferPointer(start: values, count: len))
    }
    for i in 0..<n {
      let t = taus[i] + r.lowerBound
      if let src = Self.bf16(fine[i], r) {
        merge_bf16_subtract_widen(src, values, t, nil, len)
      } else {
        fine[i].decode(r, into: UnsafeMutableBufferPointer(start: t, count: len))
        merge_subtract_widen(t, values, nil, len)
      }
    }
    var gram = [Double](repeating: 0, count: n * n)
    var changed = [Int](repeating: 0, count: n)
    var signs = [0, 0, 0]
    var noTies = [Int](repeating: 0, count: n)
    let rows = (0..<n).map { UnsafePointer(taus[$0] + r.lowerBound) as UnsafePointer<Float>? }
    merge_gram(rows, Int32(n), len, &gram)
    // Changed entries and their signs: the entries whose magnitude is above zero's.
    merge_kept(
      rows, Int32(n), len, [UInt32](repeating: 1, count: n), [UInt32](repeating: 0, count: n),
      &noTies, &signs, &changed)
    s.dots = gram
    s.changed = changed
    s.shared = signs[1]
    s.conflicting = signs[2]
    return merge_sum_squares(values, len)
  }

  /// The bf16 entries `range` of `view`, when it holds aligned bf16 data.
  static func bf16(_ view: TensorView, _ range: Range<Int>) -> UnsafePointer<UInt16>? {
    guard view.info.dtype == .bfloat16, let start = view.bytes.baseAddress,
      Int(bitPattern: start) % 2 == 0
    else { return nil }
    return (start + range.lowerBound * 2).assumingMemoryBound(to: UInt16.self)
  }

  /// ``dot(_:_:_:)``, by the AVX2 kernel when it is used.
  func dot(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ n: Int) -> Double {
    kernels ? merge_dot_f64(a, b, n) : Self.dot(a, b, n)
  }

  /// ``countLowBits(_:_:inBins:into:squaresAbove:)``, by the AVX2 kernel when it is used.
  func lowBits(
    _ t: UnsafePointer<Float>, _ n: Int, inBins bins: [UInt32],
    into histograms: [UnsafeMutablePointer<UInt32>], squaresAbove: [UInt32]
  ) -> [Double] {
    guard kernels else {
      return Self.countLowBits(t, n, inBins: bins, into: histograms, squaresAbove: squaresAbove)
    }
    precondition(!bins.isEmpty && bins.count <= 3 && bins.count == histograms.count)
    precondition(squaresAbove.count <= 2)
    var sums = [Double](repeating: 0, count: squaresAbove.count)
    histograms.map { Optional($0) }.withUnsafeBufferPointer { h in
      merge_low_bits(
        t, n, bins, h.baseAddress, Int32(bins.count), squaresAbove, &sums,
        Int32(squaresAbove.count))
    }
    return sums
  }

  /// Counts the entries by their magnitude's high bits.
  static func countHighBits(
    _ t: UnsafePointer<Float>, _ n: Int, into even: UnsafeMutablePointer<UInt32>,
    _ odd: UnsafeMutablePointer<UInt32>
  ) {
    let raw = UnsafeRawPointer(t)
    func bin(_ e: Int) -> Int {
      let bits = raw.load(fromByteOffset: e * 4, as: UInt32.self) & 0x7FFF_FFFF
      return Int(bits >> 15)
    }
    var e = 0
    while e + 2 <= n {
      even[bin(e)] &+= 1
      odd[bin(e + 1)] &+= 1
      e += 2
    }
    if e < n { even[bin(e)] &+= 1 }
  }

  /// Pass 2 over one fine-tune's entries of a chunk, in one read.
  ///
  /// Counts the entries whose magnitude's high bits are one of `bins` (three at most), by their
  /// low bits, into the histogram of that bin; returns, for each of `squaresAbove` (two at most),
  /// Σ v² in f64 over the entries whose high bits are above it.
  static func countLowBits(
    _ t: UnsafePointer<Float>, _ n: Int, inBins bins: [UInt32],
    into histograms: [UnsafeMutablePointer<UInt32>], squaresAbove: [UInt32] = []
  ) -> [Double] {
    precondition(!bins.isEmpty && bins.count <= 3 && bins.count == histograms.count)
    precondition(squaresAbove.count <= 2)
    let raw = UnsafeRawPointer(t)
    let b0 = SIMD8<UInt32>(repeating: bins[0])
    let b1 = SIMD8<UInt32>(repeating: bins[min(1, bins.count - 1)])
    let b2 = SIMD8<UInt32>(repeating: bins[bins.count - 1])
    let h0 = histograms[0]
    let h1 = histograms.count > 1 ? histograms[1] : nil
    let h2 = histograms.count > 2 ? histograms[2] : nil
    let (c0, c1, c2) = (bins[0], bins[min(1, bins.count - 1)], bins[bins.count - 1])
    func count(_ bits: UInt32) {
      let high = bits >> 15
      let low = Int(bits & 0x7FFF)
      if high == c0 { h0[low] &+= 1 }
      if high == c1, let h1 { h1[low] &+= 1 }
      if high == c2, let h2 { h2[low] &+= 1 }
    }
    // Above a bin past every magnitude (0x1_0000) nothing is summed.
    let s0 = squaresAbove.count > 0 ? squaresAbove[0] : 0x1_0000
    let s1 = squaresAbove.count > 1 ? squaresAbove[1] : 0x1_0000
    let l0 = SIMD8<UInt32>(repeating: s0)
    let l1 = SIMD8<UInt32>(repeating: s1)
    var a0 = SIMD4<Double>()
    var a1 = SIMD4<Double>()
    var e = 0
    while e + 8 <= n {
      let word = raw.loadUnaligned(fromByteOffset: e * 4, as: SIMD8<UInt32>.self)
      let bits = word & 0x7FFF_FFFF
      let high = bits &>> 15
      let k0 = unsafeBitCast(word & Lanes.ones(where: l0, isBelow: high), to: SIMD8<Float>.self)
      let k1 = unsafeBitCast(word & Lanes.ones(where: l1, isBelow: high), to: SIMD8<Float>.self)
      let x0 = SIMD4<Double>(k0.lowHalf)
      let y0 = SIMD4<Double>(k0.highHalf)
      let x1 = SIMD4<Double>(k1.lowHalf)
      let y1 = SIMD4<Double>(k1.highHalf)
      a0 += x0 * x0 + y0 * y0
      a1 += x1 * x1 + y1 * y1
      let hit = Lanes.isZero(high ^ b0) | Lanes.isZero(high ^ b1) | Lanes.isZero(high ^ b2)
      // The lanes that hit as a bit mask; only those are counted.
      var lanes = (hit &<< Lanes.positions).wrappedSum()
      while lanes != 0 {
        count(bits[Int(lanes.trailingZeroBitCount)])
        lanes &= lanes - 1
      }
      e += 8
    }
    var tail0 = 0.0
    var tail1 = 0.0
    while e < n {
      let bits = t[e].bitPattern & 0x7FFF_FFFF
      count(bits)
      let v = Double(t[e])
      if bits >> 15 > s0 { tail0 += v * v }
      if bits >> 15 > s1 { tail1 += v * v }
      e += 1
    }
    let sums = [
      (a0[0] + a0[1]) + (a0[2] + a0[3]) + tail0, (a1[0] + a1[1]) + (a1[2] + a1[3]) + tail1,
    ]
    return Array(sums.prefix(squaresAbove.count))
  }

  /// TIES's kept entries: entries kept by one τ or more, by two or more, and among those the
  /// ones whose nonzero kept values disagree in sign.
  struct Kept {
    var any = 0
    var shared = 0
    var conflicting = 0
  }

  /// Passes 3 and 4: each τ keeps the entries of its cut (the k largest magnitudes, equal ones
  /// by position); counts how the kept entries overlap.
  func kept(_ cuts: [MagnitudeCut], count: Int, threads: Int) -> Kept {
    let n = models
    let chunkCount = chunks(count)
    // Where only some of the entries equal to a threshold are kept, the first ones are: pass 3
    // counts them per chunk, so each chunk knows how many are kept before its own.
    let split = cuts.map { $0.equal > $0.k - $0.above }
    var equalBefore = [[Int]](repeating: [Int](repeating: 0, count: n), count: chunkCount)
    var equalIn = equalBefore
    if split.contains(true) {
      let slots = Mutex([[Int]](repeating: [], count: chunkCount))
      Self.parallel(chunks: chunkCount, threads: threads) { next in
        while let c = next() {
          let r = range(c)
          let equal = cuts.enumerated().map { i, cut in
            guard split[i] else { return 0 }
            let t = taus[i] + r.lowerBound
            return kernels
              ? merge_count_equal(t, r.count, cut.threshold)
              : Self.countEqual(t, r.count, cut.threshold)
          }
          slots.withLock { $0[c] = equal }
        }
      }
      equalIn = slots.withLock { $0 }
      var seen = [Int](repeating: 0, count: n)
      for c in 0..<chunkCount {
        equalBefore[c] = seen
        for i in 0..<n { seen[i] += equalIn[c][i] }
      }
    }
    let before = equalBefore
    let within = equalIn
    let slots = Mutex([Kept](repeating: Kept(), count: chunkCount))
    Self.parallel(chunks: chunkCount, threads: threads) { next in
      let counts = Counts(words: Self.buffer(chunk, UInt32(0)), kernels: kernels)
      defer { counts.words.deallocate() }
      while let c = next() {
        let r = range(c)
        let len = r.count
        // Each chunk's equal entries that are among the first k − above.
        let quota = (0..<n).map { i in
          split[i] ? min(within[c][i], max(0, cuts[i].k - cuts[i].above - before[c][i])) : 0
        }
        if kernels && n <= 4 {
          var left = quota
          var out = [0, 0, 0]
          let rows = (0..<n).map {
            UnsafePointer(taus[$0] + r.lowerBound) as UnsafePointer<Float>?
          }
          // Unsplit: every entry equal to the threshold is kept.
          let limits = cuts.enumerated().map { i, cut in
            split[i] ? cut.threshold &+ 1 : cut.threshold
          }
          merge_kept(rows, Int32(n), len, limits, cuts.map(\.threshold), &left, &out, nil)
          slots.withLock { $0[c] = Kept(any: out[0], shared: out[1], conflicting: out[2]) }
          continue
        }
        for (i, cut) in cuts.enumerated() {
          let t = UnsafePointer(taus[i] + r.lowerBound)
          if !split[i] {
            // Every entry equal to the threshold is kept.
            counts.add(t, len, from: cut.threshold, first: i == 0)
            continue
          }
          counts.add(t, len, from: cut.threshold &+ 1, first: i == 0)
          var left = quota[i]
          var e = 0
          while left > 0 && e < len {
            if t[e].bitPattern & 0x7FFF_FFFF == cut.threshold {
              counts.add(t[e], at: e)
              left -= 1
            }
            e += 1
          }
        }
        let result = counts.tally(len)
        slots.withLock { $0[c] = result }
      }
    }
    return slots.withLock { $0 }.reduce(into: Kept()) {
      $0.any += $1.any
      $0.shared += $1.shared
      $0.conflicting += $1.conflicting
    }
  }

  /// Entries whose magnitude's bit pattern is `threshold`.
  static func countEqual(_ t: UnsafePointer<Float>, _ n: Int, _ threshold: UInt32) -> Int {
    let raw = UnsafeRawPointer(t)
    let target = SIMD8<UInt32>(repeating: threshold)
    var counts = SIMD8<UInt32>()
    var e = 0
    while e + 8 <= n {
      let bits =
        raw.loadUnaligned(fromByteOffset: e * 4, as: SIMD8<UInt32>.self) & 0x7FFF_FFFF
      counts &+= Lanes.isZero(bits ^ target)
      e += 8
    }
    var total = Int(counts.wrappedSum())
    while e < n {
      if t[e].bitPattern & 0x7FFF_FFFF == threshold { total += 1 }
      e += 1
    }
    return total
  }

  /// Per entry of a chunk, in one word: how many τ keep it (bits 0–9), and how many of those
  /// are positive (bits 10–19) and negative (20–29), so at most 1,023 fine-tunes.
  struct Counts {
    /// The most fine-tunes the words count.
    static let maxModels = 1023
    let words: UnsafeMutablePointer<UInt32>
    /// Whether to use the AVX2 kernels.
    var kernels = false

    /// Counts the entries whose magnitude's bit pattern is `from` or more (replacing what the
    /// words held when `first`); returns how many.
    @discardableResult
    func add(_ t: UnsafePointer<Float>, _ n: Int, from threshold: UInt32, first: Bool) -> Int {
      if kernels { return merge_counts_add(t, n, threshold, words, first ? 1 : 0) }
      let raw = UnsafeRawPointer(t)
      let out = UnsafeMutableRawPointer(words)
      let limit = SIMD8<UInt32>(repeating: threshold)
      let one = SIMD8<UInt32>(repeating: 1)
      var total = SIMD8<UInt32>()
      var e = 0
      while e + 8 <= n {
        let word = raw.loadUnaligned(fromByteOffset: e * 4, as: SIMD8<UInt32>.self)
        let bits = word & 0x7FFF_FFFF
        // 1 where kept (bits ≥ limit: limit − 1 − bits wraps below zero), and its sign.
        let k = (limit &- one &- bits) &>> 31
        let signed = k & (one &- Lanes.isZero(bits))
        let q = signed & (word &>> 31)
        let p = signed & ~q
        let add = k | p &<< 10 | q &<< 20
        let old =
          first ? SIMD8<UInt32>() : out.loadUnaligned(fromByteOffset: e * 4, as: SIMD8<UInt32>.self)
        out.storeBytes(of: old &+ add, toByteOffset: e * 4, as: SIMD8<UInt32>.self)
        total &+= k
        e += 8
      }
      var added = Int(total.wrappedSum())
      while e < n {
        if first { words[e] = 0 }
        if t[e].bitPattern & 0x7FFF_FFFF >= threshold {
          add(t[e], at: e)
          added += 1
        }
        e += 1
      }
      return added
    }

    func add(_ v: Float, at e: Int) {
      words[e] &+= 1 | (v > 0 ? 1 << 10 : 0) | (v < 0 ? 1 << 20 : 0)
    }

    /// Entries kept by one τ or more, two or more, and of those, with both signs.
    func tally(_ n: Int) -> Kept {
      if kernels {
        var out = [0, 0, 0]
        merge_counts_tally(words, n, &out)
        return Kept(any: out[0], shared: out[1], conflicting: out[2])
      }
      let raw = UnsafeRawPointer(words)
      var any = SIMD8<UInt32>()
      var shared = SIMD8<UInt32>()
      var conflicting = SIMD8<UInt32>()
      let one = SIMD8<UInt32>(repeating: 1)
      var e = 0
      while e + 8 <= n {
        let w = raw.loadUnaligned(fromByteOffset: e * 4, as: SIMD8<UInt32>.self)
        let k = w & 0x3FF
        any &+= one &- Lanes.isZero(k)
        shared &+= one &- Lanes.isZero(k &>> 1)
        // An entry with both signs is kept twice or more.
        conflicting &+= (one &- Lanes.isZero(w & 0xFFC00)) & (one &- Lanes.isZero(w &>> 20))
        e += 8
      }
      var result = Kept(
        any: Int(any.wrappedSum()), shared: Int(shared.wrappedSum()),
        conflicting: Int(conflicting.wrappedSum()))
      while e < n {
        let w = words[e]
        if w & 0x3FF >= 1 { result.any += 1 }
        if w & 0x3FF >= 2 {
          result.shared += 1
          if w & 0xFFC00 != 0 && w >> 20 != 0 { result.conflicting += 1 }
        }
        e += 1
      }
      return result
    }
  }

  /// Σ aᵢbᵢ over `n` entries, in four lanes added at the end (a fixed order).
  static func dot(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ n: Int) -> Double {
    let x = UnsafeRawPointer(a)
    let y = UnsafeRawPointer(b)
    var acc = SIMD4<Double>()
    var e = 0
    while e + 4 <= n {
      acc +=
        x.loadUnaligned(fromByteOffset: e * 8, as: SIMD4<Double>.self)
        * y.loadUnaligned(fromByteOffset: e * 8, as: SIMD4<Double>.self)
      e += 4
    }
    var tail = 0.0
    while e < n {
      tail += a[e] * b[e]
      e += 1
    }
    return (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
  }
}

/// Lane tests as 0/1 integers and all-ones masks made by arithmetic: `SIMDMask` values and
/// `replacing(with:where:)` compile to loops over lanes here (seen in `perf annotate`).
enum Lanes {
  /// Each lane's index, for a bit mask of lanes that are 1: `(x &<< positions).wrappedSum()`.
  static let positions = SIMD8<UInt32>(0, 1, 2, 3, 4, 5, 6, 7)

  /// 1 where `x` is zero, 0 elsewhere.
  @inline(__always)
  static func isZero(_ x: SIMD8<UInt32>) -> SIMD8<UInt32> {
    ((x | (SIMD8<UInt32>() &- x)) &>> 31) ^ 1
  }

  /// All ones where `a < b`, zero elsewhere, for lanes below 2³¹.
  @inline(__always)
  static func ones(where a: SIMD8<UInt32>, isBelow b: SIMD8<UInt32>) -> SIMD8<UInt32> {
    SIMD8<UInt32>() &- ((a &- b) &>> 31)
  }
}

/// The k-th largest magnitude of one fine-tune's τ, found without sorting.
///
/// A magnitude's f32 bit pattern orders as the magnitude does (NaN above ∞). Pass 1 counts the
/// entries by the high 16 bits, which names the bin holding the k-th largest; pass 2 counts the
/// entries of that bin by the low 15 bits, which gives its exact value, and sums the squares of
/// the entries above it.
struct MagnitudeCut: Sendable {
  /// The fine-tune.
  let model: Int
  /// How many of the largest magnitudes.
  let k: Int
  /// The high bin holding the k-th largest, and the entries in higher bins.
  let high: UInt32
  let aboveHigh: Int
  /// Whether pass 2 sums the k largest squares (the top-share cuts; TIES's needs only the
  /// threshold).
  let wantsSquares: Bool
  /// After pass 2: the k-th largest magnitude's bit pattern, the entries above it, the entries
  /// equal to it, and the sum of the k largest squares.
  var threshold: UInt32 = 0
  var above = 0
  var equal = 0
  var topSquares = 0.0

  init(model: Int, k: Int, histogram: [Int], wantsSquares: Bool) {
    self.model = model
    self.k = k
    self.wantsSquares = wantsSquares
    let offset = model * TauScratch.highBins
    var bin = TauScratch.highBins - 1
    var above = 0
    while bin > 0 && above + histogram[offset + bin] < k {
      above += histogram[offset + bin]
      bin -= 1
    }
    high = UInt32(bin)
    aboveHigh = above
  }

  /// Finds the exact threshold from the high bin's entries counted by low bits.
  mutating func settle(low: ArraySlice<Int>, squaresAbove: Double) {
    var bin = TauScratch.lowBins - 1
    var above = aboveHigh
    var squares = squaresAbove
    func value(_ bin: Int) -> Double { Double(Float(bitPattern: high << 15 | UInt32(bin))) }
    while bin > 0 && above + low[low.startIndex + bin] < k {
      let c = low[low.startIndex + bin]
      if c > 0 {
        let v = value(bin)
        squares += Double(c) * v * v
      }
      above += c
      bin -= 1
    }
    threshold = high << 15 | UInt32(bin)
    self.above = above
    equal = low[low.startIndex + bin]
    let t = value(bin)
    topSquares = squares + Double(k - above) * t * t
  }
}

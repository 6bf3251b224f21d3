import CMergeSupport
import MergeCompiler
import MergeModel
import Synchronization

/// A fused consensus (TIES' final combination) as the AVX2 kernels take it.
///
/// `merge_fused_consensus` runs the executor's steps for it (each masked, scaled task vector,
/// the sign election, the sum of the agreeing terms and their weights, the division, λ, the
/// base added) with the same operations in the same order, so the bits are the same (the tests
/// compare the two). It applies when the CPU has AVX2, there are at most eight task vectors, no
/// scale is NaN (NaN marks "none" to the kernel), and every selection is a prefix of a
/// descending sort kept inside (``Cut/fusedBound``).
struct ConsensusKernel: Sendable {
  let cuts: [Cut]
  let bounds: [UInt32]
  let scales: [Float]
  let weights: [Float]
  let normalize: Bool
  let lambda: Float?

  /// The kernel's form of `op` with the task vectors' selections `cuts`, or nil.
  init?(_ op: Op, cuts: [Cut]) {
    guard Kernels.avx2,
      case .fusedConsensus(let weights, let scales, let normalize, let lambda) = op,
      weights.count <= 8, cuts.count == weights.count,
      !scales.contains(where: { $0?.isNaN == true })
    else { return nil }
    let bounds = cuts.compactMap(\.fusedBound)
    guard bounds.count == cuts.count else { return nil }
    self.cuts = cuts
    self.bounds = bounds
    self.scales = scales.map { $0 ?? .nan }
    self.weights = weights
    self.normalize = normalize
    self.lambda = lambda
  }

  /// Elements `first..<first + n` from f32 values (`first` a multiple of 8).
  func run(
    base: UnsafePointer<Float>, _ xs: [UnsafePointer<Float>?], first: Int,
    into out: UnsafeMutablePointer<Float>, _ n: Int
  ) {
    Cut.withTieWords(cuts[...], []) { ties in
      merge_fused_consensus(
        base, xs, Int32(xs.count), bounds, ties, first, scales, weights, normalize ? 1 : 0,
        lambda == nil ? 0 : 1, lambda ?? 1, out, n)
    }
  }

  /// The same from bf16 values to bf16 (as the store of a bf16 tensor rounds).
  func run(
    base: UnsafePointer<UInt16>, _ xs: [UnsafePointer<UInt16>?], first: Int,
    into out: UnsafeMutablePointer<UInt16>, _ n: Int
  ) {
    Cut.withTieWords(cuts[...], []) { ties in
      merge_fused_consensus_bf16(
        base, xs, Int32(xs.count), bounds, ties, first, scales, weights, normalize ? 1 : 0,
        lambda == nil ? 0 : 1, lambda ?? 1, out, n)
    }
  }
}

/// A tensor's final pass from bf16 inputs straight to bf16 output, one AVX2 kernel call per
/// block: TIES' fused consensus (``ConsensusKernel``, `merge_fused_consensus_bf16`) or task
/// arithmetic's fused sum (`merge_fused_task_sum_bf16`).
///
/// Block by block, the executor decodes each input to f32, runs the fused operation, then
/// rounds the result to bf16: three passes over block buffers. When the output is bf16 and the
/// operation reads only plain inputs (each a stored bf16 tensor, with no adapter, task vector,
/// vocabulary alignment or rounding to another dtype), the kernel does all three in one, with
/// the same f32 operations in the same order, so the bytes are the same (the tests compare the
/// two).
struct DirectStore: @unchecked Sendable {
  enum Kernel {
    case consensus(ConsensusKernel)
    case taskSum(weights: [Float], divisor: Float?, lambda: Float?)
  }

  let base: UnsafePointer<UInt16>
  let models: [UnsafePointer<UInt16>?]
  let kernel: Kernel

  /// The direct pass for `root` stored as `dtype`, or nil where it does not apply.
  init?(
    _ graph: TensorGraph, root: NodeID, dtype: DType, inputs: [InputTensor], blockSize: Int,
    env: Environment
  ) {
    let node = graph[root]
    guard Kernels.avx2, dtype == .bfloat16, blockSize % 8 == 0 else { return nil }
    let m: Int
    switch node.op {
    case .fusedConsensus(let weights, _, _, _):
      m = weights.count
      let cuts = (0..<m).map {
        env.cuts[node.inputs[1 + m + $0].index] ?? Cut(kind: .everything)
      }
      guard let consensus = ConsensusKernel(node.op, cuts: cuts) else { return nil }
      kernel = .consensus(consensus)
    case .fusedTaskSum(let weights, let divisor, let lambda):
      m = weights.count
      guard (1...8).contains(m) else { return nil }
      kernel = .taskSum(weights: weights, divisor: divisor, lambda: lambda)
    default: return nil
    }
    var sources: [UnsafePointer<UInt16>] = []
    for id in node.inputs.prefix(1 + m) {
      guard case .load(let i) = graph[id].op, let raw = inputs[i].plainBFloat16 else { return nil }
      sources.append(raw)
    }
    base = sources[0]
    models = sources.dropFirst().map { $0 }
  }

  /// Elements `range` of the tensor as bf16 into `out`; `range` starts at a multiple of 8.
  func run(_ range: Range<Int>, into out: UnsafeMutableRawPointer) {
    let first = range.lowerBound
    let xs = models.map { $0.map { $0 + first } }
    let target = out.assumingMemoryBound(to: UInt16.self)
    switch kernel {
    case .consensus(let consensus):
      consensus.run(base: base + first, xs, first: first, into: target, range.count)
    case .taskSum(let weights, let divisor, let lambda):
      merge_fused_task_sum_bf16(
        base + first, xs, Int32(xs.count), weights, divisor == nil ? 0 : 1, divisor ?? 1,
        lambda == nil ? 0 : 1, lambda ?? 1, target, range.count)
    }
  }
}

extension InputTensor {
  /// The stored bf16 entries, when the input is read as they are: no adapter, task vector,
  /// vocabulary alignment or rounding to another dtype, and aligned for 16-bit loads.
  var plainBFloat16: UnsafePointer<UInt16>? {
    guard view.info.dtype == .bfloat16, delta == nil, taskVector == nil, aligned == nil,
      inputDType == nil || inputDType == .bfloat16,
      let start = view.bytes.baseAddress, Int(bitPattern: start) % 2 == 0
    else { return nil }
    return start.assumingMemoryBound(to: UInt16.self)
  }
}

/// A selection's gather from two plain bf16 inputs in one AVX2 kernel.
///
/// `merge_gather_bf16` takes `|x − base|` straight from the stored entries (the executor's
/// magnitudes: the same subtraction of exactly widened values) and counts their histogram by
/// the high 16 bits on the way, so the radix selection skips its first pass.
final class DirectGather: @unchecked Sendable {
  let x: UnsafePointer<UInt16>
  let base: UnsafePointer<UInt16>
  /// The count tables this gather holds, one per worker at a time.
  private let tables = Mutex<(free: [HistogramTable], all: [HistogramTable])>(([], []))

  /// The direct gather of task vector `node`, or nil where it does not apply.
  init?(_ graph: TensorGraph, _ node: NodeID, inputs: [InputTensor]) {
    guard Kernels.avx2, case .taskVector = graph[node].op,
      case .load(let a) = graph[graph[node].inputs[0]].op,
      case .load(let b) = graph[graph[node].inputs[1]].op,
      let x = inputs[a].plainBFloat16, let base = inputs[b].plainBFloat16
    else { return nil }
    self.x = x
    self.base = base
  }

  deinit {
    tables.withLock { t in
      for table in t.all { table.zero() }
      HistogramTable.giveBack(t.all)
    }
  }

  /// Gathers elements `range` into `out`, counting them.
  func run(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
    let table = tables.withLock { t -> HistogramTable in
      if let free = t.free.popLast() { return free }
      let fresh = HistogramTable.take()
      t.all.append(fresh)
      return fresh
    }
    merge_gather_bf16(
      x + range.lowerBound, base + range.lowerBound, out, range.count, table.counts)
    tables.withLock { $0.free.append(table) }
  }

  /// The histogram of every gathered element by its high 16 bits; the count tables go back to
  /// the pool, zeroed, so this is read once, after the gather.
  func takeHistogram() -> [Int] {
    tables.withLock { t in
      var counts = [Int](repeating: 0, count: 65536)
      for table in t.all { table.drain(into: &counts) }
      HistogramTable.giveBack(t.all)
      t = ([], [])
      return counts
    }
  }
}

/// Four interleaved tables of 65536 counts (1 MB), which one worker of a histogram pass counts
/// into (``DirectGather``, ``TensorExecutor/histogram(_:count:lanes:within:)``).
///
/// Zeroed tables are kept for the next pass (at most 8 MB): a fresh allocation per gather
/// faulted in and zeroed about 1 GB of pages in a TIES merge of the benchmark models.
struct HistogramTable: @unchecked Sendable {
  let counts: UnsafeMutablePointer<UInt32>
  static let bins = 65536
  private static let pool = Mutex<[HistogramTable]>([])
  /// Tables kept beyond this are freed (two workers × three selections, and two spare).
  private static let kept = 8

  /// A zeroed table.
  static func take() -> HistogramTable {
    if let kept = pool.withLock({ $0.popLast() }) { return kept }
    let fresh = UnsafeMutablePointer<UInt32>.allocate(capacity: 4 * bins)
    fresh.initialize(repeating: 0, count: 4 * bins)
    return HistogramTable(counts: fresh)
  }

  /// Returns zeroed tables to the pool.
  static func giveBack(_ tables: [HistogramTable]) {
    let freed = pool.withLock { pool -> ArraySlice<HistogramTable> in
      pool.append(contentsOf: tables)
      let excess = max(0, pool.count - kept)
      defer { pool.removeLast(excess) }
      return pool.suffix(excess)
    }
    for table in freed { table.counts.deallocate() }
  }

  func zero() { counts.update(repeating: 0, count: 4 * Self.bins) }

  /// Adds the four tables' counts into `total` (65536 bins) and zeroes them.
  func drain(into total: inout [Int]) {
    precondition(total.count == Self.bins)
    let (t0, t1, t2, t3) = (
      counts, counts + Self.bins, counts + 2 * Self.bins, counts + 3 * Self.bins
    )
    total.withUnsafeMutableBufferPointer { sum in
      for b in 0..<Self.bins {
        sum[b] &+= Int(t0[b]) &+ Int(t1[b]) &+ Int(t2[b]) &+ Int(t3[b])
        t0[b] = 0
        t1[b] = 0
        t2[b] = 0
        t3[b] = 0
      }
    }
  }
}
